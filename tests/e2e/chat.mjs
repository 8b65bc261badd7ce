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

  // Each sees Edit and Delete on their own messages only; Alice, the owner, may delete
  // anyone's (but edit only hers).
  const actions = async (page, text) => {
    const message = page.locator('#comments .comment', { hasText: text });
    return {
      edit: await message.locator('.msg-edit').isVisible(),
      del: await message.getByRole('button', { name: 'Delete' }).isVisible(),
    };
  };
  const carolOnBob = await actions(carol, 'Bob here');
  check(!carolOnBob.edit && !carolOnBob.del, `Carol cannot act on Bob's message: ${JSON.stringify(carolOnBob)}`);
  const aliceOnBob = await actions(alice, 'Bob here');
  check(!aliceOnBob.edit && aliceOnBob.del, `Alice may delete Bob's message, not edit it: ${JSON.stringify(aliceOnBob)}`);

  // Carol fixes her message: everyone sees the new words, marked edited, in place.
  await carol.locator('#comments .comment', { hasText: 'Carol from the forum' }).locator('.msg-edit').click();
  await carol.locator('#comment-body').fill('Carol from the forum: good luck, team!');
  await carol.getByRole('button', { name: 'Save' }).click();
  for (const page of [alice, bob, carol]) {
    await page.locator('#comments .comment', { hasText: 'good luck, team!' }).locator('.edited').waitFor({ timeout: 10000 });
  }
  // Alice removes Bob's message (after confirming): a "message deleted" line for all.
  alice.once('dialog', (dialog) => dialog.accept());
  await alice.locator('#comments .comment', { hasText: 'Bob here' }).getByRole('button', { name: 'Delete' }).click();
  for (const page of [alice, bob, carol]) {
    await page.locator('#comments .comment.deleted', { hasText: 'message deleted' }).waitFor({ timeout: 10000 });
    check(await page.locator('#comments', { hasText: 'Bob here' }).count() === 0, 'the deleted words are gone');
    const count = await page.locator('#comments .comment').count();
    check(count === 3, `still three lines, in place (saw ${count})`);
  }
  check(bob.url() === await bob.evaluate(() => location.href), 'Bob stayed in the call');

  // A message that does not get through (a proxy in front of Floo answers 502 while a
  // node restarts): the form stays, with the words, and says so; sending again works.
  await bob.route('**/messages', (route) => route.fulfill({ status: 502, contentType: 'text/html', body: '' }));
  await send(bob, 'Lost in transit?');
  await bob.locator('#comment-form .not-sent', { hasText: 'Not sent' }).waitFor({ timeout: 10000 });
  check((await bob.locator('#comment-body').inputValue()) === 'Lost in transit?', 'the words are still in the form');
  await shot(bob, artifacts, 'not-sent-bob');
  await bob.unroute('**/messages');
  await bob.getByRole('button', { name: 'Send' }).click();
  for (const page of [alice, bob, carol]) await sees(page, 'Lost in transit?');
  check(await bob.locator('#comment-form .not-sent').count() === 0, 'the note goes once the message is sent');
  await shot(bob, artifacts, 'edited-and-deleted-bob');
  console.log('live chat browser walk: ok');
});
