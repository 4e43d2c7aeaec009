/** A one-line progress bar on stderr (redrawn in place on a terminal, a line every few seconds otherwise). */
export class ProgressBar {
  private lastLine = 0;
  private readonly started = Date.now();
  private readonly tty = Boolean(process.stderr.isTTY);

  constructor(private readonly label: string) {}

  update(done: number, total: number, extra = '', force = false): void {
    const now = Date.now();
    if (!force && now - this.lastLine < (this.tty ? 100 : 5000)) return;
    this.lastLine = now;
    const width = 30;
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    const secs = (now - this.started) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 && total > done ? `ETA ${Math.ceil((total - done) / rate)}s` : '';
    const line =
      `${this.label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${done}/${total} ${rate.toFixed(1)}/s ${eta} ${extra}`.trimEnd();
    process.stderr.write(this.tty ? `\r${line}\x1b[K` : `${line}\n`);
  }

  done(): void {
    if (this.tty) process.stderr.write('\n');
  }
}
