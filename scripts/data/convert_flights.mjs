// convert_flights.mjs -- flights-3m.parquet (npm vega-datasets) to the TSV
// that apps/linear/data.c reads as LIN_FMT_FLIGHTS.
//
// Usage: node convert_flights.mjs NPM_PREFIX PARQUET OUT_DIR
//
// Reads the parquet with hyparquet's parquetReadObjects in row chunks
// (rowStart/rowEnd, at most CHUNK rows, never crossing a row group) so memory
// stays bounded, and writes OUT_DIR/train.tsv and OUT_DIR/test.tsv: every
// 10th row by index (i % 10 == 9) goes to test.  One line per flight, no
// header, tab-separated:
//   label  origin  destination  hour  weekday  month
// label = 1 if delay > 15 minutes else 0; hour 0-23, weekday 0-6 (0 = Sunday),
// month 1-12, all from the `date` column, a TIMESTAMP(MICROS) with
// isAdjustedToUTC = false: a local wall-clock time, which hyparquet returns
// as a Date whose UTC fields are that wall-clock time.  Rows with a null
// field are dropped (and counted).  Outputs are written under *.tmp names and
// renamed only when complete; the last line of stdout is a JSON summary.
// It must never leave a half-written train.tsv or test.tsv behind.
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'

const CHUNK = 100000

async function load(npmPrefix, name) {
  const req = createRequire(path.join(path.resolve(npmPrefix), 'package.json'))
  return import(pathToFileURL(req.resolve(name)).href)
}

// The TSV line of one row, or null when a field is missing.
function line(r) {
  if (r.date == null || r.delay == null || !r.origin || !r.destination) return null
  const d = r.date
  const label = r.delay > 15n ? 1 : 0
  return `${label}\t${r.origin}\t${r.destination}\t${d.getUTCHours()}\t${d.getUTCDay()}\t${d.getUTCMonth() + 1}\n`
}

// [start, end) row ranges: at most CHUNK rows, aligned to row groups.
function chunks(meta) {
  const out = []
  let base = 0
  for (const g of meta.row_groups) {
    const n = Number(g.num_rows)
    for (let s = 0; s < n; s += CHUNK) out.push([base + s, base + Math.min(n, s + CHUNK)])
    base += n
  }
  return out
}

async function main() {
  const [npmPrefix, parquet, outDir] = process.argv.slice(2)
  if (!outDir) throw new Error('usage: convert_flights.mjs NPM_PREFIX PARQUET OUT_DIR')
  const hp = await load(npmPrefix, 'hyparquet')
  const { compressors } = await load(npmPrefix, 'hyparquet-compressors')
  const file = await hp.asyncBufferFromFile(parquet)
  const meta = await hp.parquetMetadataAsync(file)
  const total = Number(meta.num_rows)
  fs.mkdirSync(outDir, { recursive: true })
  const names = ['train', 'test'].map((s) => path.join(outDir, `${s}.tsv`))
  const fds = names.map((n) => fs.openSync(`${n}.tmp`, 'w'))
  const st = { rows: total, train: 0, test: 0, train_pos: 0, test_pos: 0, dropped: 0 }
  const t0 = Date.now()
  let lastPrint = 0
  for (const [rowStart, rowEnd] of chunks(meta)) {
    const rows = await hp.parquetReadObjects({
      file, compressors, rowStart, rowEnd, columns: ['date', 'delay', 'origin', 'destination'],
    })
    if (rows.length !== rowEnd - rowStart) throw new Error(`rows ${rowStart}-${rowEnd}: got ${rows.length}`)
    const buf = [[], []]
    rows.forEach((r, k) => {
      const s = line(r)
      if (s === null) { st.dropped++; return }
      const t = (rowStart + k) % 10 === 9 ? 1 : 0
      buf[t].push(s)
      st[t ? 'test' : 'train']++
      if (s[0] === '1') st[t ? 'test_pos' : 'train_pos']++
    })
    buf.forEach((b, t) => fs.writeSync(fds[t], b.join('')))
    if (Date.now() - lastPrint > 2000 || rowEnd === total) {
      lastPrint = Date.now()
      const sec = ((Date.now() - t0) / 1000).toFixed(1)
      console.log(`flights: ${rowEnd}/${total} rows (${Math.round((100 * rowEnd) / total)}%) ${sec}s`)
    }
  }
  fds.forEach((fd) => { fs.fsyncSync(fd); fs.closeSync(fd) })
  names.forEach((n) => fs.renameSync(`${n}.tmp`, n))
  st.seconds = (Date.now() - t0) / 1000
  console.log(JSON.stringify(st))
}

main().catch((e) => {
  console.error(`convert_flights: ${e && e.stack ? e.stack : e}`)
  process.exit(1)
})
