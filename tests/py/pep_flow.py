"""Drives an intercloud node's personal eventing (XEP-0163) with slixmpp's
xep_0163, xep_0115 and xep_0118 (User Tune) plugins, stock clients: two
contacts subscribe to each other's presence, one publishes her tune, the
other is notified because his entity capabilities (XEP-0115, verified by
the server over disco#info) say `tune+notify`, and gets the last tune when
he comes online; a stranger with the same capabilities gets nothing and
may not read the node. Phase `after` (run after the node was killed and
started again) checks the tune is still there for a contact coming online.
Prints one JSON line of results; exits non-zero on any failure."""

import asyncio
import json
import ssl
import xml.etree.ElementTree as ET

import slixmpp

from waiting import condition, run, until

TIMEOUT = 30
TUNE = 'http://jabber.org/protocol/tune'


class Bot(slixmpp.ClientXMPP):
    def __init__(self, jid, password, presence_to=None):
        super().__init__(jid, password)
        for p in ('xep_0030', 'xep_0060', 'xep_0115', 'xep_0163', 'xep_0118'):
            self.register_plugin(p)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.session = asyncio.get_event_loop().create_future()
        self.presence_to = presence_to
        self.tunes = []
        self.add_event_handler('session_start', self._start)
        self.add_event_handler('user_tune_publish', self._tune)

    async def _start(self, _):
        # Roster pushes go to resources that asked for the roster.
        await self.get_roster()
        # A stranger only sends directed presence, never a broadcast.
        if self.presence_to:
            self.send_presence(pto=self.presence_to)
        else:
            self.send_presence()
        if not self.session.done():
            self.session.set_result(True)

    def _tune(self, msg):
        item = msg['pubsub_event']['items']['item']
        self.tunes.append((str(msg['from']), item['payload'].findtext(f'{{{TUNE}}}title')))


async def login(jid, password, port, presence_to=None):
    bot = Bot(jid, password, presence_to)
    bot.connect(address=('127.0.0.1', port))
    await asyncio.wait_for(bot.session, TIMEOUT)
    return bot


def titles(bot, owner):
    return [t for (f, t) in bot.tunes if f == owner]


async def befriend(alice, bob):
    """Presence subscriptions both ways, the way clients make them."""
    a, b = alice.boundjid.bare, bob.boundjid.bare
    alice.send_presence_subscription(pto=b)
    bob.send_presence_subscription(pto=a)

    def both():
        return (alice.client_roster[b]['subscription'] == 'both'
                and bob.client_roster[a]['subscription'] == 'both')
    await until(both, lambda: f'mutual subscription: '
                f'{alice.client_roster[b]["subscription"]} / {bob.client_roster[a]["subscription"]}')


async def flow(port, domain):
    r = {}
    a = f'alice@{domain}'
    alice = await login(f'{a}/home', 'alice-pw', port)
    bob = await login(f'bob@{domain}/phone', 'bob-pw', port)
    await befriend(alice, bob)
    bob.disconnect()
    await bob.disconnected

    # The account is a PEP service.
    info = await alice['xep_0030'].get_info(jid=a, timeout=TIMEOUT)
    r['identities'] = sorted(list(i[:2]) for i in info['disco_info']['identities'])

    await alice['xep_0118'].publish_tune(artist='Clouds', title='first', timeout=TIMEOUT)
    # Bob comes online: the last tune is sent to him.
    bob = await login(f'bob@{domain}/phone', 'bob-pw', port)
    await until(lambda: titles(bob, a) == ['first'], lambda: f'the last tune on presence: {bob.tunes}')
    # A stranger with the same interest, who only told alice his presence.
    carol = await login(f'carol@{domain}/pc', 'carol-pw', port, presence_to=a)

    await alice['xep_0118'].publish_tune(artist='Clouds', title='second', timeout=TIMEOUT)
    await until(lambda: titles(bob, a) == ['first', 'second'], lambda: f'the second tune: {bob.tunes}')
    # Alice's own resource wants tunes too.
    await until(lambda: 'second' in titles(alice, a), lambda: f'alice\'s own tune: {alice.tunes}')
    got = await bob['xep_0060'].get_items(a, TUNE, timeout=TIMEOUT)
    r['bob_reads'] = [i['payload'].findtext(f'{{{TUNE}}}title') for i in got['pubsub']['items']]
    r['carol_reads'] = await condition(carol['xep_0060'].get_items(a, TUNE, timeout=TIMEOUT))
    r['carol_publishes_for_alice'] = await condition(
        carol['xep_0060'].publish(a, TUNE, payload=ET.Element(f'{{{TUNE}}}tune'), timeout=TIMEOUT))
    # Whatever carol was going to get has come by now: bob's next tune
    # notification follows it on the same server path.
    await alice['xep_0118'].publish_tune(artist='Clouds', title='third', timeout=TIMEOUT)
    await until(lambda: 'third' in titles(bob, a), lambda: f'the third tune: {bob.tunes}')
    r['bob'] = titles(bob, a)
    r['carol'] = titles(carol, a)
    for c in (alice, bob, carol):
        c.disconnect()
    print(json.dumps(r))


async def after(port, domain):
    a = f'alice@{domain}'
    bob = await login(f'bob@{domain}/laptop', 'bob-pw', port)
    await until(lambda: titles(bob, a) == ['third'], lambda: f'the last tune after a restart: {bob.tunes}')
    bob.disconnect()
    print(json.dumps({'bob': titles(bob, a)}))


async def main(port, domain, phase):
    await (flow if phase == 'flow' else after)(port, domain)


if __name__ == '__main__':
    run(main, phase='flow')
