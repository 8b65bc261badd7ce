// The foundation in a real browser: two people sign in with the dev login, one creates a
// team, the other joins through the invite link, posts a topic and a comment; a meeting
// is created and both see it listed. A screenshot of each main page is saved.
import { args, withBrowser, signIn, shot, check } from './lib.mjs';

const { base, artifacts } = args();
await withBrowser(artifacts, async (browser) => {
  const alice = await signIn(browser, base, 'Alice');
  await shot(alice, artifacts, '01-home-empty');

  await alice.getByLabel('Team name').fill('Apollo Guidance');
  await alice.getByRole('button', { name: 'Create team' }).click();
  await alice.getByRole('heading', { name: 'Apollo Guidance' }).waitFor();
  await shot(alice, artifacts, '02-team-empty');

  await alice.getByRole('link', { name: 'Invite', exact: true }).click();
  const code = (await alice.locator('#invite-code').textContent()).trim();
  const link = await alice.locator('#invite-link').inputValue();
  check(link.endsWith(`/join/${code}`), `invite link ${link} carries the code ${code}`);
  await shot(alice, artifacts, '03-invite');

  // Bob, in a second browser context, joins through the link.
  const bob = await signIn(browser, base, 'Bob');
  await bob.goto(link);
  await bob.getByRole('button', { name: 'Join Apollo Guidance' }).click();
  await bob.getByRole('heading', { name: 'Apollo Guidance' }).waitFor();

  await alice.getByRole('link', { name: 'Members' }).click();
  await alice.getByText('Bob').first().waitFor();
  await shot(alice, artifacts, '04-members');

  // Bob posts a topic, then comments on it without a page reload (htmx).
  await bob.getByRole('link', { name: 'Forum' }).click();
  await shot(bob, artifacts, '05-forum-empty');
  await bob.getByRole('link', { name: 'New topic' }).click();
  await bob.getByLabel('Title').fill('Landing checklist');
  await bob.locator('#body').fill('Before **descent**:\n\n- check the radar\n- `1202` alarms are fine');
  await bob.getByRole('button', { name: 'Post topic' }).click();
  await bob.getByRole('heading', { name: 'Landing checklist' }).waitFor();
  check(await bob.locator('.prose strong', { hasText: 'descent' }).count() === 1, 'markdown rendered');
  const topicUrl = bob.url();
  await bob.locator('#comment-body').fill('Radar is *green*.');
  await bob.getByRole('button', { name: 'Send' }).click();
  await bob.locator('#comments .comment', { hasText: 'Radar is green.' }).waitFor();
  check(bob.url() === topicUrl, 'the comment was added in place');
  check(await bob.locator('#comment-body').inputValue() === '', 'the form is cleared after sending');
  await shot(bob, artifacts, '06-topic');

  await alice.getByRole('link', { name: 'Forum' }).click();
  await alice.getByRole('link', { name: 'Landing checklist' }).waitFor();
  // Bob's comment is news to Alice until she reads the topic.
  await alice.locator('li.topic', { hasText: 'Landing checklist' }).locator('.badge.new', { hasText: '1 new' }).waitFor();
  await shot(alice, artifacts, '07-forum');
  await alice.getByRole('link', { name: 'Landing checklist' }).click();
  await alice.locator('#comments .comment', { hasText: 'Radar is green.' }).waitFor();
  await alice.getByRole('link', { name: 'Forum' }).click();
  await alice.getByRole('link', { name: 'Landing checklist' }).waitFor();
  check(await alice.locator('li.topic .badge.new').count() === 0, 'read once opened');

  // Searching the team finds the topic and the comment, the word highlighted, and opens
  // the comment where it is.
  await alice.getByRole('searchbox', { name: 'Search this team' }).fill('radar');
  await alice.getByRole('searchbox', { name: 'Search this team' }).press('Enter');
  await alice.locator('#search-results h2', { hasText: 'Messages (1)' }).waitFor();
  check(await alice.locator('#search-results mark', { hasText: /radar/i }).count() === 2, 'the word marked in both hits');
  await shot(alice, artifacts, '07b-search');
  await alice.locator('#search-results a', { hasText: 'Bob in' }).click();
  await alice.locator('#m1', { hasText: 'Radar is green.' }).waitFor();

  // Alice starts a meeting and joins it; Bob sees it listed as live.
  await alice.getByRole('link', { name: 'Meetings' }).click();
  await alice.getByLabel('Title').fill('Design review');
  await alice.getByRole('button', { name: 'Start meeting' }).click();
  await alice.getByRole('heading', { name: /Design review/ }).waitFor();
  await alice.getByRole('button', { name: 'Join call' }).click();
  await alice.getByText('here now').waitFor();
  await shot(alice, artifacts, '08-meeting');

  await bob.getByRole('link', { name: 'Meetings' }).click();
  await bob.locator('li.meeting.live', { hasText: 'Design review' }).waitFor();
  check(await bob.locator('li.meeting.live', { hasText: 'In it now: Alice' }).count() === 1, 'presence listed');
  await shot(bob, artifacts, '09-team-meetings');
  await bob.goto(`${base}/`);
  await bob.locator('.card', { hasText: 'Live meetings' }).getByText('Design review').waitFor();
  await shot(bob, artifacts, '10-home');
  console.log('foundation browser walk: ok');
});
