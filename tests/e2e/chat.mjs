// Live meeting chat in real browsers: Alice and Bob on the meeting page, Carol (not in
// the meeting) on its forum topic. Everyone sees everyone's messages without a reload.
import { args, withBrowser, teamWith, shot, check } from './lib.mjs';

const { base, artifacts } = args();
await withBrowser(artifacts, async (browser) => {
  const { owner: alice, members: [bob, carol], teamUrl } = await teamWith(browser, base, 'Chatty', 'Alice', ['Bob', 'Carol']);

  await alice.getByLabel('Title').fill('Sprint review');
  await alice.getByRole('button', { name: 'Start meeting' }).click();
  await alice.getByRole('button', { name: 'Join call' }).click();
  await alice.getByText('here now').waitFor();
  const meetingUrl = alice.url();

  // Bob opens the team page and sees the live meeting with Alice in it, then joins.
  await bob.goto(teamUrl);
  await bob.locator('li.meeting.live', { hasText: 'In it now: Alice' }).waitFor();
  await bob.getByRole('link', { name: 'Sprint review' }).click();
  await bob.getByRole('button', { name: 'Join call' }).click();
  await bob.getByText('In the meeting (2)').waitFor();
  // Alice's page learns of Bob without a reload.
  await alice.getByText('In the meeting (2)').waitFor();

  // Carol follows the chat from the forum.
  await carol.goto(meetingUrl);
  await carol.getByRole('link', { name: 'Forum' }).click();
  await carol.getByRole('link', { name: 'Sprint review' }).click();
  await carol.getByRole('heading', { name: 'Meeting chat' }).waitFor();
  const carolUrl = carol.url();

  const send = async (page, text) => {
    await page.locator('#comment-body').fill(text);
    await page.getByRole('button', { name: 'Send' }).click();
  };
  const sees = (page, text) => page.locator('#comments .comment', { hasText: text }).waitFor({ timeout: 10000 });

  await send(alice, 'Hello from **Alice**');
  for (const page of [alice, bob, carol]) await sees(page, 'Hello from Alice');
  await send(bob, 'Bob here, `ready`');
  for (const page of [alice, bob, carol]) await sees(page, 'Bob here, ready');
  await send(carol, 'Carol from the forum: good luck!');
  for (const page of [alice, bob, carol]) await sees(page, 'Carol from the forum');

  check(alice.url() === meetingUrl && carol.url() === carolUrl, 'nobody reloaded or navigated');
  for (const page of [alice, bob, carol]) {
    const count = await page.locator('#comments .comment').count();
    check(count === 3, `exactly three messages, no duplicates (saw ${count})`);
  }
  await shot(alice, artifacts, 'meeting-chat-alice');
  await shot(carol, artifacts, 'forum-chat-carol');
  console.log('live chat browser walk: ok');
});
