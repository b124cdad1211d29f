"""Two slixmpp users on two federated servers: mutual subscription across
domains, presence, then COUNT chat messages each way, all delivered in
order. Works against any pair of servers (ours, or ours and Prosody).
Prints one JSON line of results; exits non-zero on failure."""

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
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        loop = asyncio.get_event_loop()
        self.session = loop.create_future()
        self.failed = loop.create_future()
        self.chats = []
        self.add_event_handler('session_start', lambda _: self.session.done() or self.session.set_result(True))
        self.add_event_handler('failed_auth', lambda s: self.failed.done() or self.failed.set_result(s))
        self.add_event_handler('message', self._message)

    def _message(self, msg):
        if msg['type'] in ('chat', 'normal') and msg['body']:
            self.chats.append(msg['body'])


async def login(jid, password, host, port):
    bot = Bot(jid, password)
    bot.connect(address=(host, port))
    done, _ = await asyncio.wait([bot.session, bot.failed], timeout=TIMEOUT,
                                 return_when=asyncio.FIRST_COMPLETED)
    if not done or bot.failed.done():
        raise AssertionError(f'{jid}: could not log in')
    return bot



async def main(a):
    j1, j2 = f'{a.user1}@{a.domain1}', f'{a.user2}@{a.domain2}'
    u1 = await login(j1 + '/one', a.password1, a.host1, a.port1)
    u2 = await login(j2 + '/two', a.password2, a.host2, a.port2)
    for u in (u1, u2):
        await u.get_roster(timeout=TIMEOUT)
        u.send_presence()
    u1.send_presence(pto=j2, ptype='subscribe')
    await until(lambda: u1.client_roster[j2]['subscription'] == 'both'
                and u2.client_roster[j1]['subscription'] == 'both', 'subscriptions across domains')
    await until(lambda: len(u1.client_roster[j2].resources) > 0
                and len(u2.client_roster[j1].resources) > 0, 'presence across domains')
    results = {'subscription': 'both', 'presence': 'seen'}
    t0 = time.monotonic()
    u1.send_message(mto=j2, mbody='first', mtype='chat')
    await until(lambda: 'first' in u2.chats, 'first message', poll=0.0002)
    results['first_message_ms'] = round((time.monotonic() - t0) * 1000, 1)
    # Round trips, one at a time: steady latency.
    rtts = []
    for i in range(20):
        t = time.monotonic()
        u1.send_message(mto=j2, mbody=f'ping{i}', mtype='chat')
        await until(lambda: f'ping{i}' in u2.chats, 'latency probe', poll=0.0002)
        rtts.append((time.monotonic() - t) * 1000)
    rtts.sort()
    results['one_way_ms_median'] = round(rtts[len(rtts) // 2], 2)
    u1.chats.clear()
    u2.chats.clear()
    t0 = time.monotonic()
    for i in range(a.count):
        u1.send_message(mto=j2, mbody=f'a{i}', mtype='chat')
        u2.send_message(mto=j1, mbody=f'b{i}', mtype='chat')
    await until(lambda: len(u2.chats) >= a.count and len(u1.chats) >= a.count,
                'all messages', timeout=120)
    el = time.monotonic() - t0
    assert u2.chats == [f'a{i}' for i in range(a.count)], 'lost or reordered 1->2'
    assert u1.chats == [f'b{i}' for i in range(a.count)], 'lost or reordered 2->1'
    results['messages'] = 2 * a.count
    results['messages_per_second'] = round(2 * a.count / el)
    for u in (u1, u2):
        u.disconnect()
    print(json.dumps(results))


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    for k in ('1', '2'):
        ap.add_argument('--host' + k, default='127.0.0.1')
        ap.add_argument('--port' + k, type=int, required=True)
        ap.add_argument('--domain' + k, required=True)
        ap.add_argument('--user' + k, required=True)
        ap.add_argument('--password' + k, required=True)
    ap.add_argument('--count', type=int, default=1000)
    ap.add_argument('--debug', action='store_true')
    a = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if a.debug else logging.ERROR)
    try:
        asyncio.get_event_loop().run_until_complete(main(a))
    except AssertionError as e:
        print(f'FAILED: {e}', file=sys.stderr)
        sys.exit(1)
