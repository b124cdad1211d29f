"""A room on server 1 with an occupant from server 2 (another intercloud
node, or a stock server such as Prosody): user 1 creates the room, user 2
joins it across s2s, each says COUNT things, and both hear all of them in
order per sender. Prints one JSON line of results; exits non-zero on
failure."""

import argparse
import asyncio
import json
import ssl
import sys

import slixmpp

from waiting import until

TIMEOUT = 30


class Bot(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        for p in ('xep_0004', 'xep_0045', 'xep_0203'):
            self.register_plugin(p)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.session = asyncio.get_event_loop().create_future()
        self.said = []
        self.add_event_handler('session_start', self._start)
        self.add_event_handler('groupchat_message', self._groupchat)

    def _start(self, _):
        self.send_presence()
        if not self.session.done():
            self.session.set_result(True)

    def _groupchat(self, msg):
        if msg['body'] and msg['delay']['stamp'] is None:
            self.said.append((msg['from'].resource, msg['body']))


async def login(jid, password, host, port):
    bot = Bot(jid, password)
    bot.connect(address=(host, port))
    await asyncio.wait_for(bot.session, TIMEOUT)
    return bot


async def main(a):
    room = f'{a.room}@conference.{a.domain1}'
    u1 = await login(f'{a.user1}@{a.domain1}/one', a.password1, a.host1, a.port1)
    u2 = await login(f'{a.user2}@{a.domain2}/two', a.password2, a.host2, a.port2)
    await u1['xep_0045'].join_muc_wait(room, 'one', timeout=TIMEOUT)
    await u1['xep_0045'].set_room_config(room, u1['xep_0004'].make_form('submit'), timeout=TIMEOUT)
    pres, _, occupants, _ = await u2['xep_0045'].join_muc_wait(room, 'two', timeout=TIMEOUT)
    r = {'joined_as': pres['muc']['role'], 'saw': sorted(str(p['from'].resource) for p in occupants)}
    for i in range(a.count):
        u1.send_message(mto=room, mbody=f'one {i}', mtype='groupchat')
        u2.send_message(mto=room, mbody=f'two {i}', mtype='groupchat')
    for u in (u1, u2):
        await until(lambda: len(u.said) >= 2 * a.count,
                    lambda: f'{2 * a.count} messages ({len(u.said)} so far)')
    for name, u in (('one', u1), ('two', u2)):
        for sender in ('one', 'two'):
            got = [b for (s, b) in u.said if s == sender]
            assert got == [f'{sender} {i}' for i in range(a.count)], (name, sender, got[:5])
    r['messages'] = len(u1.said) + len(u2.said)
    u1.disconnect()
    u2.disconnect()
    print(json.dumps(r))


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    for k in ('host1', 'domain1', 'user1', 'password1', 'host2', 'domain2', 'user2', 'password2', 'room'):
        ap.add_argument(f'--{k}', required=True)
    for k in ('port1', 'port2', 'count'):
        ap.add_argument(f'--{k}', type=int, required=True)
    args = ap.parse_args()
    try:
        asyncio.get_event_loop().run_until_complete(main(args))
    except Exception as e:  # noqa: BLE001 - the test prints why
        print(f'FAILED: {e!r}', file=sys.stderr)
        sys.exit(1)
