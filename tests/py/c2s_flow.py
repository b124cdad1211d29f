"""Drives an intercloud node with slixmpp (a stock XMPP client): login with
SCRAM-SHA-256 and SCRAM-SHA-1 over STARTTLS, presence, roster, mutual
subscription, 1,000 chat messages each way in order, ping, disco#info,
offline delivery, and a wrong password. Prints one JSON line of results;
exits non-zero on any failure."""

import argparse
import asyncio
import json
import logging
import ssl
import sys
import time

import slixmpp

from waiting import until

TIMEOUT = 30


class Bot(slixmpp.ClientXMPP):
    def __init__(self, jid, password, mech):
        super().__init__(jid, password)
        self['feature_mechanisms'].use_mech = mech
        self.register_plugin('xep_0030')
        self.register_plugin('xep_0199')
        self.register_plugin('xep_0203')
        # The node's certificate is self-signed by `intercloud init`.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.session = asyncio.get_event_loop().create_future()
        self.failed = asyncio.get_event_loop().create_future()
        self.chats = []
        self.delayed = []
        self.add_event_handler('session_start', self._start)
        self.add_event_handler('failed_auth', self._failed)
        self.add_event_handler('message', self._message)

    def _start(self, _):
        if not self.session.done():
            self.session.set_result(True)

    def _failed(self, stanza):
        if not self.failed.done():
            self.failed.set_result(stanza)

    def _message(self, msg):
        if msg['type'] in ('chat', 'normal'):
            self.chats.append(msg['body'])
            if msg['delay']['stamp'] is not None:
                self.delayed.append(msg['body'])


async def login(jid, password, mech, port):
    bot = Bot(jid, password, mech)
    bot.connect(address=('127.0.0.1', port))
    done, _ = await asyncio.wait([bot.session, bot.failed], timeout=TIMEOUT,
                                 return_when=asyncio.FIRST_COMPLETED)
    if bot.failed.done():
        raise AssertionError(f'{jid}: authentication failed: {bot.failed.result()}')
    if not done:
        raise AssertionError(f'{jid}: no session within {TIMEOUT}s')
    return bot



async def main(port, domain, count):
    results = {}
    alice_jid, bob_jid = f'alice@{domain}', f'bob@{domain}'
    alice = await login(alice_jid + '/laptop', 'alice-pw', 'SCRAM-SHA-256', port)
    bob = await login(bob_jid + '/phone', 'bob-pw', 'SCRAM-SHA-1', port)
    results['mechanisms'] = [alice['feature_mechanisms'].mech.name,
                             bob['feature_mechanisms'].mech.name]
    assert results['mechanisms'] == ['SCRAM-SHA-256', 'SCRAM-SHA-1'], results
    for b in (alice, bob):
        await b.get_roster(timeout=TIMEOUT)
        b.send_presence()

    # Mutual subscription: slixmpp approves and subscribes back by itself
    # (auto_authorize / auto_subscribe), so both rosters reach 'both'.
    alice.send_presence(pto=bob_jid, ptype='subscribe')
    await until(lambda: alice.client_roster[bob_jid]['subscription'] == 'both'
                and bob.client_roster[alice_jid]['subscription'] == 'both', 'subscription both')
    await until(lambda: len(alice.client_roster[bob_jid].resources) > 0
                and len(bob.client_roster[alice_jid].resources) > 0, 'presence of each other')
    results['roster'] = 'both'

    # A fresh roster get shows the item the server persisted.
    roster = await alice.get_roster(timeout=TIMEOUT)
    items = roster['roster']['items']
    assert bob_jid in items and items[bob_jid]['subscription'] == 'both', items

    # 1,000 chat messages each way, interleaved, all delivered in order.
    t0 = time.monotonic()
    for i in range(count):
        alice.send_message(mto=bob_jid, mbody=f'a{i}', mtype='chat')
        bob.send_message(mto=alice_jid, mbody=f'b{i}', mtype='chat')
    await until(lambda: len(bob.chats) >= count and len(alice.chats) >= count,
                'all chat messages', timeout=120)
    elapsed = time.monotonic() - t0
    assert bob.chats == [f'a{i}' for i in range(count)], 'alice->bob out of order or lost'
    assert alice.chats == [f'b{i}' for i in range(count)], 'bob->alice out of order or lost'
    results['messages'] = 2 * count
    results['messages_per_second'] = round(2 * count / elapsed)

    # XEP-0199 ping and XEP-0030 disco#info on the server.
    rtt = await alice['xep_0199'].ping(jid=domain, timeout=TIMEOUT)
    results['ping_rtt_ms'] = round(rtt * 1000, 2)
    info = await alice['xep_0030'].get_info(jid=domain, timeout=TIMEOUT)
    features = info['disco_info']['features']
    for f in ('urn:xmpp:ping', 'jabber:iq:version', 'http://jabber.org/protocol/disco#info'):
        assert f in features, features
    results['disco_features'] = len(features)

    # XEP-0160: bob goes offline, alice writes, bob gets it at his next presence.
    bob.disconnect()
    await until(lambda: len(alice.client_roster[bob_jid].resources) == 0, 'bob unavailable')
    alice.send_message(mto=bob_jid, mbody='while you were away', mtype='chat')
    await asyncio.sleep(0.5)
    bob2 = await login(bob_jid + '/phone', 'bob-pw', 'SCRAM-SHA-256', port)
    bob2.send_presence()
    await until(lambda: 'while you were away' in bob2.delayed, 'offline message with delay')
    results['offline'] = 'delivered'

    # A wrong password is refused with <not-authorized/>.
    try:
        await login(alice_jid + '/x', 'wrong', 'SCRAM-SHA-256', port)
        raise AssertionError('wrong password accepted')
    except AssertionError as e:
        assert 'not-authorized' in str(e), str(e)
    results['wrong_password'] = 'not-authorized'

    for b in (alice, bob2):
        b.disconnect()
    print(json.dumps(results))


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--domain', required=True)
    ap.add_argument('--count', type=int, default=1000)
    ap.add_argument('--debug', action='store_true')
    a = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if a.debug else logging.ERROR)
    try:
        asyncio.get_event_loop().run_until_complete(main(a.port, a.domain, a.count))
    except AssertionError as e:
        print(f'FAILED: {e}', file=sys.stderr)
        sys.exit(1)
