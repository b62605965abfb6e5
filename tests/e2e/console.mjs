// The agent console in headless Chromium: analyse a ticket (弱信号 banner, departments, reply
// with a clickable citation), accept the suggestion (feedback), and stream a chat answer.
import { createRequire } from 'node:module';

// playwright-core lives in the test's own node folder (NODE_DIR), outside the repository.
const require = createRequire(process.env.NODE_DIR + '/');
const { chromium } = require('playwright-core');

const [base, key, shot, supervisorKey, reviewerKey] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const fail = (m) => { console.error('console: ' + m); process.exit(1); };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(base + '/');
  await page.fill('#key', key);
  await page.dispatchEvent('#key', 'change');
  await page.fill('#reporter', '13812345678');
  await page.fill('#ticket', '我叫王小明，电话13812345678。小区楼道里闻到很重的煤气味，燃气管道漏气，老人头晕，请尽快派人处理！失业保险金领取有什么条件？');
  await page.click('#analyze');
  await page.waitForSelector('#result:not([hidden])', { timeout: 30000 });
  const banner = await page.textContent('#signals');
  if (!banner.includes('弱信号')) fail('no 弱信号 banner: ' + banner);
  const masked = await page.content();
  if (masked.includes('13812345678')) fail('the phone number reached the page');
  const depts = await page.textContent('#depts');
  if (!depts.includes('1.')) fail('no department ranking');
  const cite = await page.$('#reply .cite');
  if (cite) {
    await cite.click();
    const src = await page.textContent('#source');
    if (!src || src.length < 10) fail('the citation did not open its source');
  }
  await page.click('button[data-verdict="accept"]');
  await page.waitForFunction(() => document.querySelector('#fb-status').textContent.includes('已记录'), null, { timeout: 10000 });
  // The ticket is stored: the agent sends it to another unit (it goes to the review queue).
  if (!(await page.textContent('#summary')).includes('工单 #')) fail('the ticket was not stored');
  await page.fill('#unit-other', '市住房和城乡建设局');
  await page.click('#dispatch');
  await page.waitForFunction(() => document.querySelector('#dispatch-status').textContent.includes('已派往'), null, { timeout: 10000 });
  const dispatched = await page.textContent('#dispatch-status');
  if (!dispatched.includes('改派')) fail('the changed unit was not recorded as a correction: ' + dispatched);
  // The same matter again: flagged as a repeat.
  await page.click('#analyze');
  await page.waitForSelector('#repeats-card', { timeout: 30000 });
  const repeats = await page.textContent('#repeats-card');
  if (!repeats.includes('此前已有')) fail('no repeat notice: ' + repeats);
  // A ticket about one town: the town, the direct dispatch to its office and the rule behind it.
  await page.fill('#ticket', '虎门镇金洲社区一家KTV每晚噪音扰民到凌晨两点');
  await page.click('#analyze');
  await page.waitForFunction(() => document.querySelector('#direct').textContent.includes('虎门镇'), null, { timeout: 30000 });
  const direct = await page.textContent('#direct');
  if (!direct.includes('直派 虎门镇综合行政执法办') || !direct.includes('town-nuisance')) fail('no direct dispatch to the town: ' + direct);
  const units = await page.textContent('#depts');
  if (!units.includes('市城市管理综合执法局')) fail('the ranking does not read Dongguan units: ' + units);
  // A 一件事 ticket: the bundle card with every item's Dongguan unit.
  await page.fill('#ticket', '我想把个体户转成公司，要跑哪些部门？');
  await page.click('#analyze');
  await page.waitForSelector('#bundle-card', { timeout: 30000 });
  const bundle = await page.textContent('#bundle-card');
  if (!bundle.includes('个体工商户转型为企业') || !bundle.includes('市税务局')) fail('no bundle card: ' + bundle);
  await page.fill('#question', '失业保险金最长能领多久？');
  await page.click('#send');
  await page.waitForFunction(() => document.querySelector('#chatlog').textContent.includes('置信度'), null, { timeout: 30000 });
  const chat = await page.textContent('#chatlog');
  if (!chat.includes('失业保险金')) fail('no streamed answer: ' + chat);
  // A reviewer confirms the corrected ticket in the queue.
  await page.fill('#key', reviewerKey);
  await page.dispatchEvent('#key', 'change');
  await page.click('nav button[data-page="reviewer"]');
  await page.click('#load-queue');
  await page.waitForSelector('#queue .qitem .confirm', { timeout: 10000 });
  await page.click('#queue .qitem .confirm');
  await page.waitForFunction(() => document.querySelector('#queue .qitem .st').textContent.includes('已确认'), null, { timeout: 10000 });
  // A supervisor reads the analysis report with its charts.
  await page.fill('#key', supervisorKey);
  await page.dispatchEvent('#key', 'change');
  await page.click('nav button[data-page="supervisor"]');
  await page.selectOption('#report-days', '0');
  await page.click('#load-report');
  await page.waitForFunction(() => document.querySelector('#report-status').textContent.includes('完成'), null, { timeout: 30000 });
  const report = await page.$eval('#report-frame', f => f.srcdoc);
  if (!report.includes('<svg') || !report.includes('智能数据分析')) fail('no analysis report with charts');
  await page.screenshot({ path: shot.replace(/\.png$/, '-supervisor.png'), fullPage: true });
  await page.click('nav button[data-page="agent"]');
  await page.screenshot({ path: shot, fullPage: true });
  console.log('console: ok');
} finally {
  await browser.close();
}
