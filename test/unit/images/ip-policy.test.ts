import { describe, expect, it } from 'vitest';
import { classifyAddress, ipLiteral, normalizeHost } from '../../../src/images/ip-policy.js';

describe('classifyAddress', () => {
  it.each([
    '8.8.8.8',
    '93.184.216.34',
    '1.1.1.1',
    '2606:4700:4700::1111',
    '2a00:1450:4001:82a::200e',
    '2002:808:808::1', // 6to4 of 8.8.8.8
    '64:ff9b::808:808', // NAT64 of 8.8.8.8
  ])('%s is public', (ip) => {
    expect(classifyAddress(ip)).toEqual({ kind: 'public' });
  });

  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.0.1', 'private'],
    ['169.254.1.1', 'linkLocal'],
    ['100.64.0.1', 'carrierGradeNat'],
    ['::1', 'loopback'],
    ['fe80::1', 'linkLocal'],
    ['fd12:3456::1', 'uniqueLocal'],
    ['fec0::1', 'deprecatedSiteLocal'],
  ])('%s is private (%s): allowed only for allow-listed names', (ip, range) => {
    expect(classifyAddress(ip)).toEqual({ kind: 'private', range });
  });

  it.each([
    ['169.254.169.254', 'cloudMetadata'],
    ['169.254.170.2', 'cloudMetadata'],
    ['100.100.100.200', 'cloudMetadata'],
    ['fd00:ec2::254', 'cloudMetadata'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['::', 'unspecified'],
    ['255.255.255.255', 'broadcast'],
    ['224.0.0.251', 'multicast'],
    ['ff02::1', 'multicast'],
    ['192.0.2.1', 'reserved'],
    ['240.0.0.1', 'reserved'],
    ['2001:db8::1', 'reserved'],
    ['::ffff:127.0.0.1', 'ipv4Mapped'],
    ['::ffff:8.8.8.8', 'ipv4Mapped'],
    ['::ffff:0:a00:1', 'ipv4Mapped'], // RFC 6145 translated
    ['::7f00:1', 'ipv4Compatible'],
    ['2002:a00:1::', '6to4 embedding private'],
    ['2002:7f00:1::1', '6to4 embedding loopback'],
    ['2001:0:4136:e378:8000:63bf:f5ff:fffe', 'teredo embedding private'], // client 10.0.0.1
    ['64:ff9b::7f00:1', 'nat64 embedding loopback'],
    ['64:ff9b::a9fe:a9fe', 'nat64 embedding cloudMetadata'],
    ['not an ip', 'unparseable'],
    ['0177.0.0.1', 'unparseable'], // non-canonical forms never reach here from the URL parser
    ['2130706433', 'unparseable'],
  ])('%s is forbidden (%s) even when allow-listed', (ip, range) => {
    expect(classifyAddress(ip)).toEqual({ kind: 'forbidden', range });
  });
});

describe('host helpers', () => {
  it('recognises IP literals in WHATWG URL host form', () => {
    expect(ipLiteral(new URL('http://[::ffff:127.0.0.1]/').hostname)).toBe('::ffff:7f00:1');
    expect(ipLiteral(new URL('http://2130706433/').hostname)).toBe('127.0.0.1');
    expect(ipLiteral(new URL('http://0x7f.1/').hostname)).toBe('127.0.0.1');
    expect(ipLiteral('example.com')).toBeNull();
  });

  it('normalises host names for the allow-list', () => {
    expect(normalizeHost('LocalHost.')).toBe('localhost');
    expect(normalizeHost('[::1]')).toBe('::1');
  });
});
