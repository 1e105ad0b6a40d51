// Small human-readable formatters shared by the HTML page and the plain-text table.

/** 1536 -> "1.5 KiB". Exact below 1 KiB. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '-';
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = -1;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 100 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}

/** 1234567 -> "1,234,567" (locale-independent so tests and screenshots are stable). */
export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return '-';
  return Math.trunc(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Seconds -> "23h59m", "4m05s", "12s"; negative values get a leading "-". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '-';
  const sign = seconds < 0 ? '-' : '';
  let s = Math.floor(Math.abs(seconds));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const pad = (v: number) => v.toString().padStart(2, '0');
  if (d > 0) return `${sign}${d}d${pad(h)}h`;
  if (h > 0) return `${sign}${h}h${pad(m)}m`;
  if (m > 0) return `${sign}${m}m${pad(s)}s`;
  return `${sign}${s}s`;
}

/** "3s ago", or "never" when there is no timestamp. */
export function formatAgo(secondsAgo: number | null): string {
  if (secondsAgo === null) return 'never';
  return `${formatDuration(Math.max(0, secondsAgo))} ago`;
}

/** Pads every column to its widest cell; `right` lists the columns to right-align (numbers). */
export function alignColumns(rows: string[][], right: ReadonlySet<number> = new Set(), gap = '  '): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows.map((row) =>
    row
      .map((cell, i) => {
        const last = i === row.length - 1;
        if (right.has(i)) return cell.padStart(widths[i]!);
        return last ? cell : cell.padEnd(widths[i]!);
      })
      .join(gap)
      .trimEnd(),
  );
}
