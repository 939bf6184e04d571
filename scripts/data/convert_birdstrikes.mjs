// convert_birdstrikes.mjs -- FAA wildlife strike reports (npm vega-datasets,
// data/birdstrikes.csv, 10,000 strikes of 1990-2003) to a CSV that pslinear
// reads with --format csv: will a strike damage the aircraft?
//
// Usage: node convert_birdstrikes.mjs NPM_DIR OUT_DIR
//
// Label column `damage`: 1 when "Effect Amount of damage" is anything but
// None (Minor, Medium, Substantial), 0 for None; rows with no value there are
// dropped.  Features, as a user would hand them over: the categorical columns
// airport, aircraft, operator, state, phase, size (of the animal), species,
// time (of day), year and month (as words: `year=y1994`, `month=m05`), and the one number,
// speed (knots, raw, empty when unknown).  The cost columns are left out:
// they say whether there was damage.  Every 5th row by index (i % 5 == 4) goes
// to OUT_DIR/test.csv, the rest to OUT_DIR/train.csv, both with the header.
// The input is parsed as RFC 4180 CSV (airport names hold commas); output
// cells with a comma or a quote are quoted.  Outputs are written under *.tmp
// names and renamed when complete; the last stdout line is a JSON summary.
import fs from 'node:fs'
import path from 'node:path'

// RFC 4180 rows of text (quoted fields may hold commas, quotes as "").
function parseCsv(text) {
  const rows = []
  let row = [], cell = '', q = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (q) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++ }
      else if (c === '"') q = false
      else cell += c
    } else if (c === '"') q = true
    else if (c === ',') { row.push(cell); cell = '' }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++
      row.push(cell); rows.push(row); row = []; cell = ''
    } else cell += c
  }
  if (cell !== '' || row.length) { row.push(cell); rows.push(row) }
  return rows
}

const quote = (s) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s)
const COLS = [
  ['airport', 'Airport Name'], ['aircraft', 'Aircraft Make Model'],
  ['operator', 'Aircraft Airline Operator'], ['state', 'Origin State'],
  ['phase', 'Phase of flight'], ['size', 'Wildlife Size'], ['species', 'Wildlife Species'],
  ['time', 'Time of day'],
]

function main() {
  const [npmDir, outDir] = process.argv.slice(2)
  if (!outDir) throw new Error('usage: convert_birdstrikes.mjs NPM_DIR OUT_DIR')
  const src = path.join(npmDir, 'node_modules', 'vega-datasets', 'data', 'birdstrikes.csv')
  const rows = parseCsv(fs.readFileSync(src, 'utf8'))
  const head = rows.shift()
  const col = (name) => {
    const i = head.indexOf(name)
    if (i < 0) throw new Error(`${src}: no column '${name}'`)
    return i
  }
  const dmg = col('Effect Amount of damage'), date = col('Flight Date'), speed = col('Speed IAS in knots')
  const idx = COLS.map(([, n]) => col(n))
  fs.mkdirSync(outDir, { recursive: true })
  const names = ['train', 'test'].map((s) => path.join(outDir, `${s}.csv`))
  const fds = names.map((n) => fs.openSync(`${n}.tmp`, 'w'))
  const header = ['damage', ...COLS.map(([n]) => n), 'year', 'month', 'speed'].join(',') + '\n'
  fds.forEach((fd) => fs.writeSync(fd, header))
  const st = { dataset: 'birdstrikes', rows: 0, dropped: 0, train: 0, test: 0, positive: 0 }
  const t0 = Date.now()
  let k = 0
  for (const r of rows) {
    if (r.length !== head.length || r[dmg] === '') { st.dropped++; continue }
    const y = r[dmg] === 'None' ? 0 : 1
    const [yy, mm] = (r[date] || '').split('-')
    const cells = [String(y), ...idx.map((i) => quote(r[i])),
      yy ? `y${yy}` : '', mm ? `m${mm}` : '', r[speed]]
    const t = k++ % 5 === 4 ? 1 : 0
    fs.writeSync(fds[t], cells.join(',') + '\n')
    st[t ? 'test' : 'train']++
    st.positive += y
    st.rows++
  }
  fds.forEach((fd) => { fs.fsyncSync(fd); fs.closeSync(fd) })
  names.forEach((n) => fs.renameSync(`${n}.tmp`, n))
  st.seconds = (Date.now() - t0) / 1000
  console.log(`birdstrikes: ${st.rows} strikes (${st.positive} with damage), ${st.dropped} dropped`)
  console.log(JSON.stringify(st))
}

try {
  main()
} catch (e) {
  console.error(`convert_birdstrikes: ${e && e.stack ? e.stack : e}`)
  process.exit(1)
}
