/**
 * The one progress bar of the command line (import, reindex, model fetch): a line on stderr, redrawn in
 * place on a terminal, else printed every few seconds so a log file gets a trace without a flood.
 */
export interface ProgressOptions {
  /** Unit shown after the counts and the rate, e.g. 'MiB'; none for plain item counts. */
  unit?: string;
  /** Divisor from the counts given to update() to the unit shown (1048576 for bytes shown in MiB). */
  scale?: number;
}

export class ProgressBar {
  private lastLine = 0;
  private readonly started = Date.now();
  private readonly tty = Boolean(process.stderr.isTTY);
  private readonly unit: string;
  private readonly scale: number;

  constructor(
    private readonly label: string,
    opts: ProgressOptions = {},
  ) {
    this.unit = opts.unit ? ` ${opts.unit}` : '';
    this.scale = opts.scale ?? 1;
  }

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
    const n = (v: number) => (this.scale === 1 ? String(v) : (v / this.scale).toFixed(1));
    const line =
      `${this.label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${n(done)}/${n(total)}${this.unit} ${(rate / this.scale).toFixed(1)}${this.unit}/s ${eta} ${extra}`.trimEnd();
    process.stderr.write(this.tty ? `\r${line}\x1b[K` : `${line}\n`);
  }

  done(): void {
    if (this.tty) process.stderr.write('\n');
  }
}
