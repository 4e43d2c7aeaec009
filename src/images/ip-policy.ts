/**
 * Which IP addresses an image fetch may connect to.
 *
 * Three answers:
 * - `public`: a globally routable unicast address; always allowed.
 * - `private`: loopback, RFC 1918, link-local, CGNAT, IPv6 unique-local and site-local. Refused unless the
 *   URL's host name is on the `allowedPrivateHosts` list (a development setting).
 * - `forbidden`: never allowed, allow-list or not: cloud metadata endpoints, unspecified (0.0.0.0, ::),
 *   broadcast, multicast, reserved and documentation ranges, IPv4-mapped / IPv4-compatible IPv6 (which
 *   smuggle an IPv4 address past IPv6 checks), and 6to4 / Teredo / NAT64 addresses that embed a
 *   non-public IPv4 address.
 */
import net from 'node:net';
import ipaddr from 'ipaddr.js';

export type AddressClass = { kind: 'public' } | { kind: 'private'; range: string } | { kind: 'forbidden'; range: string };

/** Instance-metadata endpoints of the big clouds (AWS, GCP, Azure, OpenStack; AWS ECS; Alibaba; AWS IPv6). */
const METADATA_ADDRESSES = new Set(['169.254.169.254', '169.254.170.2', '100.100.100.200', 'fd00:ec2::254']);

/** IPv4 ranges a developer may allow for named hosts; every other non-unicast range is forbidden. */
const PRIVATE_V4 = new Set(['loopback', 'private', 'linkLocal', 'carrierGradeNat']);
/** IPv6 ranges a developer may allow for named hosts. */
const PRIVATE_V6 = new Set(['loopback', 'linkLocal', 'uniqueLocal', 'deprecatedSiteLocal']);

function classifyV4(addr: ipaddr.IPv4): AddressClass {
  if (METADATA_ADDRESSES.has(addr.toString())) return { kind: 'forbidden', range: 'cloudMetadata' };
  const range = addr.range();
  if (range === 'unicast') return { kind: 'public' };
  if (PRIVATE_V4.has(range)) return { kind: 'private', range };
  return { kind: 'forbidden', range };
}

function v4FromParts(hi: number, lo: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([(hi >> 8) & 0xff, hi & 0xff, (lo >> 8) & 0xff, lo & 0xff]);
}

/** An IPv6 address that carries an IPv4 address is only as public as the IPv4 address it carries. */
function embedded(range: string, ...v4s: ipaddr.IPv4[]): AddressClass {
  for (const v4 of v4s) {
    const c = classifyV4(v4);
    if (c.kind !== 'public') return { kind: 'forbidden', range: `${range} embedding ${c.range}` };
  }
  return { kind: 'public' };
}

function classifyV6(addr: ipaddr.IPv6): AddressClass {
  const p = addr.parts;
  if (METADATA_ADDRESSES.has(addr.toString().replace(/%.*$/, ''))) return { kind: 'forbidden', range: 'cloudMetadata' };
  const range = addr.range();
  switch (range) {
    case 'ipv4Mapped':
    case 'rfc6145':
      return { kind: 'forbidden', range: 'ipv4Mapped' };
    case '6to4': // 2002:AABB:CCDD::/48 carries AA.BB.CC.DD
      return embedded(range, v4FromParts(p[1]!, p[2]!));
    case 'teredo': // 2001:0:SSSS:SSSS:flags:port:CCCC:CCCC, server in clear, client inverted
      return embedded(range, v4FromParts(p[2]!, p[3]!), v4FromParts(~p[6]! & 0xffff, ~p[7]! & 0xffff));
    case 'rfc6052': // NAT64 64:ff9b::a.b.c.d
      return embedded('nat64', v4FromParts(p[6]!, p[7]!));
    case 'unicast':
      // IPv4-compatible ::a.b.c.d (deprecated) and anything outside global unicast 2000::/3
      if (p.slice(0, 6).every((x) => x === 0)) return { kind: 'forbidden', range: 'ipv4Compatible' };
      if ((p[0]! & 0xe000) !== 0x2000) return { kind: 'forbidden', range: 'reserved' };
      return { kind: 'public' };
    default:
      if (PRIVATE_V6.has(range)) return { kind: 'private', range };
      return { kind: 'forbidden', range };
  }
}

/** Classifies an IP address (as returned by DNS or written canonically in a URL). Unparseable is forbidden. */
export function classifyAddress(address: string): AddressClass {
  const bare = address.replace(/^\[|\]$/g, '');
  // Only the canonical forms: DNS answers and WHATWG-parsed URL hosts are canonical; anything else
  // (octal, hex, short forms) must not reach here, and is refused if it does.
  if (net.isIP(bare.replace(/%.*$/, '')) === 0) return { kind: 'forbidden', range: 'unparseable' };
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.parse(bare);
  } catch {
    return { kind: 'forbidden', range: 'unparseable' };
  }
  return addr.kind() === 'ipv4' ? classifyV4(addr as ipaddr.IPv4) : classifyV6(addr as ipaddr.IPv6);
}

/** The host of a WHATWG URL as an IP literal without brackets, or null when it is a name. */
export function ipLiteral(hostname: string): string | null {
  const bare = hostname.replace(/^\[|\]$/g, '');
  return net.isIP(bare) === 0 ? null : bare;
}

/** Lower-cased, without brackets or a trailing dot: how host names are compared with the allow-list. */
export function normalizeHost(host: string): string {
  return host
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '');
}

/** Human words for a range, for error messages a storefront developer reads. */
export function describeRange(range: string): string {
  const words: Record<string, string> = {
    loopback: 'a loopback address',
    private: 'a private network address',
    linkLocal: 'a link-local address',
    carrierGradeNat: 'a carrier-grade NAT address',
    uniqueLocal: 'a private (unique-local) IPv6 address',
    deprecatedSiteLocal: 'a site-local IPv6 address',
    cloudMetadata: 'a cloud metadata endpoint',
    unspecified: 'the unspecified address',
    broadcast: 'the broadcast address',
    multicast: 'a multicast address',
    ipv4Mapped: 'an IPv4-mapped IPv6 address',
    ipv4Compatible: 'an IPv4-compatible IPv6 address',
    reserved: 'a reserved address range',
    unparseable: 'an address that could not be parsed',
  };
  return (
    words[range] ??
    (range.includes('embedding')
      ? `an IPv6 address embedding a non-public IPv4 address (${range})`
      : `a non-public address range (${range})`)
  );
}
