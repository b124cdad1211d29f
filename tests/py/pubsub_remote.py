"""Publish-subscribe across s2s both ways between server 1 (our node) and
server 2 (another intercloud node, or a stock server such as Prosody): each
user creates a node on their own server's pubsub service, the other
subscribes to it from the other server, COUNT items are published and the
subscriber is notified of each, in order, and reads them back. Prints one
JSON line of results; exits non-zero on failure."""

import argparse
import asyncio
import json
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp

from waiting import until

TIMEOUT = 30
NS = 'urn:intercloud:test'


class Bot(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        for p in ('xep_0004', 'xep_0030', 'xep_0060'):
            self.register_plugin(p)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.session = asyncio.get_event_loop().create_future()
        self.notified = []
        self.add_event_handler('session_start', self._start)
        self.add_event_handler('pubsub_publish', self._publish)

    def _start(self, _):
        self.send_presence()
        if not self.session.done():
            self.session.set_result(True)

    def _publish(self, msg):
        item = msg['pubsub_event']['items']['item']
        self.notified.append((str(msg['from']), item['id'], item['payload'].text))


async def login(jid, password, host, port):
    bot = Bot(jid, password)
    bot.connect(address=(host, port))
    await asyncio.wait_for(bot.session, TIMEOUT)
    return bot


def entry(text):
    e = ET.Element(f'{{{NS}}}entry')
    e.text = text
    return e


async def across(owner, subscriber, svc, node, count):
    """owner's node at svc, subscriber on the other server: what it got."""
    await owner['xep_0060'].create_node(svc, node, timeout=TIMEOUT)
    sub = await subscriber['xep_0060'].subscribe(svc, node, timeout=TIMEOUT)
    assert sub['pubsub']['subscription']['subscription'] == 'subscribed', sub
    for i in range(count):
        await owner['xep_0060'].publish(svc, node, id=f'{node}-{i}', payload=entry(f'{node} {i}'),
                                        timeout=TIMEOUT)
    mine = lambda: [n for n in subscriber.notified if n[0] == svc]
    await until(lambda: len(mine()) >= count, lambda: f'{count} notifications from {svc}: {mine()}')
    got = await subscriber['xep_0060'].get_items(svc, node, timeout=TIMEOUT)
    return {'notified': [n[2] for n in mine()],
            'items': sorted(i['id'] for i in got['pubsub']['items'])}


async def main(a):
    u1 = await login(f'{a.user1}@{a.domain1}/one', a.password1, a.host1, a.port1)
    u2 = await login(f'{a.user2}@{a.domain2}/two', a.password2, a.host2, a.port2)
    r = {
        'on1': await across(u1, u2, f'pubsub.{a.domain1}', 'from1', a.count),
        'on2': await across(u2, u1, f'pubsub.{a.domain2}', 'from2', a.count),
    }
    for u in (u1, u2):
        u.disconnect()
    print(json.dumps(r))


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    for k in ('host1', 'domain1', 'user1', 'password1', 'host2', 'domain2', 'user2', 'password2'):
        ap.add_argument(f'--{k}', required=True)
    for k in ('port1', 'port2', 'count'):
        ap.add_argument(f'--{k}', type=int, required=True)
    args = ap.parse_args()
    try:
        asyncio.get_event_loop().run_until_complete(main(args))
    except Exception as e:  # noqa: BLE001 - the test prints why
        print(f'FAILED: {e!r}', file=sys.stderr)
        sys.exit(1)
