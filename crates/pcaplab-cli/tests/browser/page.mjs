// Headless-Chromium check of the pages `pcaplab serve` shows a person.
//
// Usage:
//   PCAPLAB_NODE_MODULES=.ci/node/node_modules node page.mjs BASE_URL SCREENSHOT_DIR
//
// Environment:
//   PCAPLAB_NODE_MODULES  where playwright-core is installed (made by `bash .ci/browser`);
//                         default: .ci/node/node_modules of the repository this script is in.
//   PCAPLAB_CHROMIUM      the Chromium binary (default /usr/bin/chromium, Debian's package;
//                         Playwright's own browser builds are never used).
//   PCAPLAB_CAPTURE       the capture to open: the text of its link on the list page
//                         (default: the first link).
//   PCAPLAB_DOWNLOAD_DIR  when set, the first "Download pcap" link of the capture's top flows
//                         is followed and the file the browser downloads is saved there.
//
// What it checks (the pages' contract):
//   BASE_URL/            a <table id="captures"> whose body rows each hold one
//                        <a class="capture" href="/captures/...">NAME</a> (at least one), and
//                        an #last-updated element with text. Screenshot: index.png.
//   the capture's page   (reached by clicking its link) four visible <svg class="chart"
//                        data-chart="protocols|talkers|ports|timeline">, each at least
//                        101x51 px, each with a drawn mark of non-zero size: rect.bar, or for
//                        the timeline path.series or rect.bar. Screenshot: capture.png.
//   the download         (with PCAPLAB_DOWNLOAD_DIR) a <a class="flow-pcap"> in a body row of
//                        table#flows; clicking it downloads a file, which is saved under its
//                        suggested name.
//   both pages           no console error, no uncaught page error, no failed request and no
//                        response with status >= 400 (this includes the /favicon.ico Chromium
//                        asks for by itself when a page names no <link rel="icon">).
//
// Prints one JSON line on stdout and exits 0 when all holds:
//   {"captures":N,"followed":"NAME","charts":{"protocols":K,...},"flowRows":F,"screenshots":[...],
//    "download":{"href":"/api/...","file":"DIR/NAME","suggestedFilename":"NAME"}|null}
// otherwise prints what failed on stderr and exits 1. Gives up after 60 s.

import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const OVERALL_TIMEOUT_MS = 60_000;
const CHARTS = ['protocols', 'talkers', 'ports', 'timeline'];
const MARKS = {
  protocols: 'rect.bar',
  talkers: 'rect.bar',
  ports: 'rect.bar',
  timeline: 'path.series, rect.bar',
};

class CheckFailed extends Error {}
function fail(message) {
  throw new CheckFailed(message);
}

function usage() {
  process.stderr.write('usage: node page.mjs BASE_URL SCREENSHOT_DIR\n');
  process.exit(2);
}

const [baseArg, shotDirArg] = process.argv.slice(2);
if (!baseArg || !shotDirArg) usage();
const base = baseArg.replace(/\/+$/, '');
const shotDir = path.resolve(shotDirArg);

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeModules = path.resolve(
  process.env.PCAPLAB_NODE_MODULES || path.join(here, '..', '..', '..', '..', '.ci', 'node', 'node_modules'),
);
const executablePath = process.env.PCAPLAB_CHROMIUM || '/usr/bin/chromium';
const wantedCapture = process.env.PCAPLAB_CAPTURE || '';
const downloadDir = process.env.PCAPLAB_DOWNLOAD_DIR || '';

let chromium;
try {
  // Resolve playwright-core from that folder, not from wherever this script happens to be.
  ({ chromium } = createRequire(path.join(nodeModules, 'noop.js'))('playwright-core'));
} catch (e) {
  process.stderr.write(
    `browser test: cannot load playwright-core from ${nodeModules} (run \`bash .ci/browser\`): ${e.message}\n`,
  );
  process.exit(1);
}

// Everything that goes wrong in the page as it runs, reported together at the end.
const problems = [];
let browser;
let userDataDir;

const timer = setTimeout(() => {
  finish(new CheckFailed(`timed out after ${OVERALL_TIMEOUT_MS / 1000} s`));
}, OVERALL_TIMEOUT_MS);

let finished = false;
async function finish(error, summary) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  try {
    await browser?.close();
  } catch {
    // Already gone.
  }
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  if (!error && problems.length) {
    error = new CheckFailed(`${problems.length} problem(s) while the pages ran`);
  }
  if (error) {
    // A bug in this script shows its stack; a check or a Playwright call that failed, its message.
    const bug = error instanceof TypeError || error instanceof ReferenceError || error instanceof SyntaxError;
    // Playwright's call logs carry terminal colours: drop them.
    const what = (bug ? error.stack : error?.message || String(error)).replace(/\x1b\[[0-9;]*m/g, '');
    let text = `browser test FAILED: ${what}\n`;
    for (const p of problems) text += `  - ${p}\n`;
    process.stderr.write(text);
    process.exit(1);
  }
  process.stdout.write(`${JSON.stringify(summary)}\n`, () => process.exit(0));
}

async function run() {
  mkdirSync(shotDir, { recursive: true });
  userDataDir = mkdtempSync(path.join(tmpdir(), 'pcaplab-chromium-'));
  const args = [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-dev-shm-usage',
  ];
  // A persistent context on a fresh folder of its own: nothing is shared with other runs.
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args,
    viewport: { width: 1280, height: 900 },
    timeout: 30_000,
    acceptDownloads: true,
  });
  browser = context;
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(15_000);

  // Which page a request was made for: requests of the list page that the click on a capture
  // link aborts (net::ERR_ABORTED) are the navigation's doing, not a fault.
  let phase = 'index';
  const phaseOf = new WeakMap();
  page.on('request', (req) => phaseOf.set(req, phase));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const loc = msg.location();
    const where = loc?.url ? ` (${loc.url}${loc.lineNumber ? `:${loc.lineNumber}` : ''})` : '';
    // Chromium asks for /favicon.ico by itself unless the page names an icon.
    const hint = /favicon\.ico/.test(`${msg.text()}${where}`)
      ? ' [serve /favicon.ico or give the page a <link rel="icon">]'
      : '';
    problems.push(`console error on ${page.url()}: ${msg.text()}${where}${hint}`);
  });
  page.on('pageerror', (err) => problems.push(`uncaught error on ${page.url()}: ${err.message}`));
  // Requests that end as downloads: Chromium aborts them as page loads (net::ERR_ABORTED).
  const downloads = new Set();
  page.on('requestfailed', (req) => {
    const why = req.failure()?.errorText ?? 'failed';
    if (why.includes('ERR_ABORTED') && phaseOf.get(req) === 'index' && phase !== 'index') return;
    if (why.includes('ERR_ABORTED') && downloads.has(req.url())) return;
    problems.push(`request failed: ${req.method()} ${req.url()}: ${why}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400) {
      problems.push(`HTTP ${res.status()} for ${res.request().method()} ${res.url()}`);
    }
  });

  // The list page.
  const indexUrl = `${base}/`;
  const resp = await page.goto(indexUrl, { waitUntil: 'load' });
  if (!resp) fail(`no response for ${indexUrl}`);
  if (resp.status() >= 400) fail(`${indexUrl} answered HTTP ${resp.status()}`);
  await settle(page);

  const table = page.locator('table#captures');
  if ((await table.count()) !== 1) fail(`${indexUrl}: no <table id="captures">`);
  const links = page.locator('table#captures tbody tr a.capture');
  const captures = await links.count();
  if (captures < 1) fail(`${indexUrl}: no <a class="capture"> link in the body rows of table#captures`);
  const rows = await page.locator('table#captures tbody tr').evaluateAll((trs) =>
    trs.map((tr) => tr.querySelectorAll('a.capture').length),
  );
  const badRows = rows.filter((n) => n !== 1).length;
  if (badRows) fail(`${indexUrl}: ${badRows} of ${rows.length} body rows of table#captures lack exactly one a.capture`);
  const names = (await links.allTextContents()).map((t) => t.trim());
  const hrefs = await links.evaluateAll((as) => as.map((a) => a.getAttribute('href') || ''));
  const badHref = hrefs.find((h) => !h.startsWith('/captures/'));
  if (badHref !== undefined) fail(`${indexUrl}: capture link href ${JSON.stringify(badHref)} does not start with /captures/`);
  const lastUpdated = page.locator('#last-updated');
  if ((await lastUpdated.count()) < 1) fail(`${indexUrl}: no #last-updated element`);
  if (!(await lastUpdated.first().textContent())?.trim()) fail(`${indexUrl}: #last-updated has no text`);

  const indexShot = path.join(shotDir, 'index.png');
  await page.screenshot({ path: indexShot, fullPage: true });

  // Follow one capture's link.
  let at = 0;
  if (wantedCapture) {
    at = names.indexOf(wantedCapture);
    if (at < 0) fail(`${indexUrl}: no capture link named ${JSON.stringify(wantedCapture)} (have: ${names.join(', ')})`);
  }
  const followed = names[at];
  const target = new URL(hrefs[at], indexUrl);
  phase = 'detail';
  const [detailResp] = await Promise.all([
    page.waitForNavigation({ url: (u) => u.pathname === target.pathname, waitUntil: 'load' }),
    links.nth(at).click(),
  ]);
  if (detailResp && detailResp.status() >= 400) fail(`${target.href} answered HTTP ${detailResp.status()}`);
  await settle(page);

  // The capture's page: four charts, each drawn.
  const charts = {};
  for (const name of CHARTS) {
    const svg = page.locator(`svg.chart[data-chart="${name}"]`);
    const n = await svg.count();
    if (n !== 1) fail(`${page.url()}: ${n} <svg class="chart" data-chart="${name}"> elements (want 1)`);
    try {
      await svg.waitFor({ state: 'visible', timeout: 10_000 });
    } catch {
      fail(`${page.url()}: chart ${name} is not visible`);
    }
    const box = await svg.boundingBox();
    if (!box || box.width <= 100 || box.height <= 50) {
      fail(`${page.url()}: chart ${name} is ${box ? `${box.width}x${box.height}` : 'not laid out'} (want > 100x50)`);
    }
    const marks = svg.locator(MARKS[name]);
    // Charts may be drawn by script after load: wait for a mark of non-zero size.
    const drawn = await page
      .waitForFunction(
        ([sel, css]) => {
          const el = document.querySelector(sel);
          return !!el && [...el.querySelectorAll(css)].some((m) => {
            const r = m.getBoundingClientRect();
            return r.width > 0 && r.height > 0;
          });
        },
        [`svg.chart[data-chart="${name}"]`, MARKS[name]],
        { timeout: 10_000 },
      )
      .then(() => true, () => false);
    const count = await marks.count();
    if (!drawn) {
      fail(`${page.url()}: chart ${name} has no drawn mark (${MARKS[name]} with non-zero size); ${count} mark element(s) in all`);
    }
    charts[name] = count;
  }

  // The top flows table: its rows (none when the page has no table).
  const flowRows = await page.locator('table#flows tbody tr').count();

  const captureShot = path.join(shotDir, 'capture.png');
  await page.screenshot({ path: captureShot, fullPage: true });

  // A flow's packets, as a person gets them: by clicking its link.
  let download = null;
  if (downloadDir) {
    const link = page.locator('table#flows tbody tr a.flow-pcap').first();
    if ((await link.count()) < 1) fail(`${page.url()}: no <a class="flow-pcap"> in the body rows of table#flows`);
    const href = (await link.getAttribute('href')) || '';
    if (!href.startsWith('/api/captures/')) fail(`${page.url()}: flow link href ${JSON.stringify(href)}`);
    downloads.add(new URL(href, page.url()).href);
    phase = 'download';
    const [dl] = await Promise.all([page.waitForEvent('download'), link.click()]);
    const failure = await dl.failure();
    if (failure) fail(`download of ${href} failed: ${failure}`);
    mkdirSync(downloadDir, { recursive: true });
    const file = path.join(downloadDir, dl.suggestedFilename());
    await dl.saveAs(file);
    download = { href, file, suggestedFilename: dl.suggestedFilename() };
  }

  return { captures, followed, charts, flowRows, screenshots: [indexShot, captureShot], download };
}

// Let the page's own requests (scripts, styles, data it fetches) finish, so that their failures
// are seen; a page that keeps polling never goes idle, which is fine.
async function settle(page) {
  await page.waitForLoadState('networkidle', { timeout: 5_000 }).catch(() => {});
}

run().then(
  (summary) => finish(null, summary),
  (error) => finish(error),
);
