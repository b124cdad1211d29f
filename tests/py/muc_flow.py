"""Drives an intercloud node's multi-user chat service (XEP-0045) with
slixmpp's xep_0045 plugin, a stock client: room creation and instant
configuration, subject, joining with history, groupchat in order, private
messages, nick conflicts, kick, ban, a password-protected room, and
destroying a room. Prints one JSON line of results; exits non-zero on any
failure."""

import asyncio
import json
import ssl

import slixmpp
from slixmpp.exceptions import PresenceError

from waiting import run, until

TIMEOUT = 30


class Bot(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        for p in ('xep_0004', 'xep_0030', 'xep_0045', 'xep_0203'):
            self.register_plugin(p)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.session = asyncio.get_event_loop().create_future()
        self.said = []
        self.private = []
        self.codes = []
        self.subjects = []
        self.add_event_handler('session_start', self._start)
        self.add_event_handler('groupchat_message', self._groupchat)
        self.add_event_handler('message', self._message)
        self.add_event_handler('groupchat_presence', self._presence)
        self.add_event_handler('groupchat_subject', lambda m: self.subjects.append(m['subject']))

    def _start(self, _):
        self.send_presence()
        if not self.session.done():
            self.session.set_result(True)

    def _groupchat(self, msg):
        if msg['body'] and msg['delay']['stamp'] is None:
            self.said.append((msg['from'].resource, msg['body']))

    def _message(self, msg):
        if msg['type'] == 'chat' and msg['body']:
            self.private.append((str(msg['from']), msg['body']))

    def _presence(self, pres):
        codes = [int(s) for s in pres['muc']['status_codes']]
        if pres['type'] == 'unavailable':
            self.codes.append((pres['from'].resource, sorted(codes)))


async def login(jid, password, port):
    bot = Bot(jid, password)
    bot.connect(address=('127.0.0.1', port))
    await asyncio.wait_for(bot.session, TIMEOUT)
    return bot


async def presence_error(coro):
    """The condition a join is refused with (None when it succeeds)."""
    try:
        await coro
        return None
    except PresenceError as e:
        return e.presence['error']['condition']


async def main(port, domain):
    r = {}
    svc = f'conference.{domain}'
    room = f'lounge@{svc}'
    alice = await login(f'alice@{domain}/a', 'alice-pw', port)
    bob = await login(f'bob@{domain}/b', 'bob-pw', port)
    carol = await login(f'carol@{domain}/c', 'carol-pw', port)
    info = await alice['xep_0030'].get_info(jid=svc, timeout=TIMEOUT)
    r['identities'] = [list(i[:2]) for i in info['disco_info']['identities']]

    pres, _, _, _ = await alice['xep_0045'].join_muc_wait(room, 'alice', timeout=TIMEOUT)
    r['created'] = sorted(int(c) for c in pres['muc']['status_codes'])
    # An instant room: the default configuration accepted as it is.
    await alice['xep_0045'].set_room_config(room, alice['xep_0004'].make_form('submit'), timeout=TIMEOUT)
    alice['xep_0045'].set_subject(room, 'Intercloud')
    # The room echoes the new subject to her: set before bob comes in.
    await until(lambda: 'Intercloud' in alice.subjects, 'the subject set')
    pres, subject, occupants, _ = await bob['xep_0045'].join_muc_wait(room, 'bob', maxstanzas=0, timeout=TIMEOUT)
    r['subject'] = subject['subject']
    r['bob_sees'] = sorted(str(p['from'].resource) for p in occupants)
    r['bob_role'] = pres['muc']['role']

    # Fifty messages from alice reach both, in order.
    for i in range(50):
        alice.send_message(mto=room, mbody=f'm{i}', mtype='groupchat')
    await until(lambda: len(bob.said) >= 50,
                lambda: f'fifty groupchat messages (bob has {len(bob.said)}: {bob.said[:3]}…{bob.said[-3:]})')
    r['in_order'] = [b for (_, b) in bob.said] == [f'm{i}' for i in range(50)]
    await until(lambda: len(alice.said) >= 50, 'alice hearing herself')

    # A latecomer asks for the last five.
    _, _, _, history = await carol['xep_0045'].join_muc_wait(room, 'carol', maxstanzas=5, timeout=TIMEOUT)
    r['history'] = [m['body'] for m in history]

    # A private message between occupants.
    bob.send_message(mto=f'{room}/carol', mbody='psst', mtype='chat')
    await until(lambda: carol.private, 'a private message')
    r['private'] = carol.private[0]

    # Nick taken.
    dave = await login(f'dave@{domain}/d', 'dave-pw', port)
    r['conflict'] = await presence_error(dave['xep_0045'].join_muc_wait(room, 'bob', timeout=TIMEOUT))

    # Kick, then ban.
    await alice['xep_0045'].set_role(room, 'carol', 'none', reason='testing', timeout=TIMEOUT)
    await until(lambda: ('carol', [110, 307]) in carol.codes, 'carol told she was kicked')
    await until(lambda: ('carol', [307]) in bob.codes, 'bob told carol was kicked')
    await alice['xep_0045'].set_affiliation(room, 'outcast', jid=f'carol@{domain}', timeout=TIMEOUT)
    r['banned'] = await presence_error(carol['xep_0045'].join_muc_wait(room, 'carol', timeout=TIMEOUT))

    # A password-protected room.
    locked = f'vault@{svc}'
    await alice['xep_0045'].join_muc_wait(locked, 'alice', timeout=TIMEOUT)
    form = alice['xep_0004'].make_form('submit')
    form.add_field(var='muc#roomconfig_passwordprotectedroom', value='1')
    form.add_field(var='muc#roomconfig_roomsecret', value='s3cret')
    await alice['xep_0045'].set_room_config(locked, form, timeout=TIMEOUT)
    r['no_password'] = await presence_error(bob['xep_0045'].join_muc_wait(locked, 'bob', timeout=TIMEOUT))
    await bob['xep_0045'].join_muc_wait(locked, 'bob', password='s3cret', timeout=TIMEOUT)

    # Destroyed: bob hears it.
    await alice['xep_0045'].destroy(locked, reason='done', timeout=TIMEOUT)
    await until(lambda: ('bob', []) in bob.codes, 'bob told the room is gone')
    r['kicked_codes'] = [c for (n, c) in carol.codes if n == 'carol']
    for b in (alice, bob, carol, dave):
        b.disconnect()
    print(json.dumps(r))


if __name__ == '__main__':
    run(main)
