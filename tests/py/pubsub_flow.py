"""Drives an intercloud node's publish-subscribe service (XEP-0060) with
slixmpp's xep_0060 plugin, a stock client: discovery, node creation with a
configuration form, subscription, publishing with payloads and the
notifications they raise, retrieval (all, latest, by id), retraction with
notify, purge and deletion with their notifications, configuration, and
the XEP's errors. Prints one JSON line of results; exits non-zero on any
failure."""

import asyncio
import json
import ssl
import xml.etree.ElementTree as ET

import slixmpp

from waiting import condition, run, until

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
        self.events = []
        self.add_event_handler('session_start', self._start)
        for kind in ('publish', 'retract', 'purge', 'delete'):
            self.add_event_handler(f'pubsub_{kind}', self._event(kind))

    def _start(self, _):
        self.send_presence()
        if not self.session.done():
            self.session.set_result(True)

    def _event(self, kind):
        def handle(msg):
            ev = msg['pubsub_event']
            if kind == 'publish':
                item = ev['items']['item']
                text = item['payload'].text if item['payload'] is not None else None
                self.events.append(('publish', ev['items']['node'], item['id'], text))
            elif kind == 'retract':
                self.events.append(('retract', ev['items']['node'], ev['items']['retract']['id'], None))
            else:
                self.events.append((kind, ev[kind]['node'], None, None))
        return handle


async def login(jid, password, port):
    bot = Bot(jid, password)
    bot.connect(address=('127.0.0.1', port))
    await asyncio.wait_for(bot.session, TIMEOUT)
    return bot



def entry(text):
    e = ET.Element(f'{{{NS}}}entry')
    e.text = text
    return e


async def main(port, domain):
    r = {}
    alice = await login(f'alice@{domain}/a', 'alice-pw', port)
    bob = await login(f'bob@{domain}/b', 'bob-pw', port)
    ps = alice['xep_0060']
    # Discovery: the server lists its pubsub service, which says what it is.
    items = await alice['xep_0030'].get_items(jid=domain, timeout=TIMEOUT)
    services = [i[0] for i in items['disco_items']['items']]
    svc = f'pubsub.{domain}'
    assert svc in services, services
    info = await alice['xep_0030'].get_info(jid=svc, timeout=TIMEOUT)
    r['identities'] = [list(i[:2]) for i in info['disco_info']['identities']]
    assert ['pubsub', 'service'] in r['identities'], r['identities']
    assert 'http://jabber.org/protocol/pubsub#publish' in info['disco_info']['features']

    # A node created with a configuration form.
    form = alice['xep_0004'].make_form('submit')
    form.add_field(var='pubsub#title', value='Cloud news')
    form.add_field(var='pubsub#max_items', value='10')
    await ps.create_node(svc, 'news', config=form, timeout=TIMEOUT)
    r['create_again'] = await condition(ps.create_node(svc, 'news', timeout=TIMEOUT))
    config = await ps.get_node_config(svc, 'news', timeout=TIMEOUT)
    cform = config['pubsub_owner']['configure']['form']
    r['title'] = cform.get_values()['pubsub#title']

    await bob['xep_0060'].subscribe(svc, 'news', timeout=TIMEOUT)
    for i in range(3):
        await ps.publish(svc, 'news', id=f'i{i}', payload=entry(f'item {i}'), timeout=TIMEOUT)
    await until(lambda: len([e for e in bob.events if e[0] == 'publish']) == 3, 'three notifications')
    r['notified'] = [e[2:] for e in bob.events if e[0] == 'publish']
    assert r['notified'] == [('i0', 'item 0'), ('i1', 'item 1'), ('i2', 'item 2')], r['notified']

    got = await bob['xep_0060'].get_items(svc, 'news', timeout=TIMEOUT)
    r['items'] = [i['id'] for i in got['pubsub']['items']]
    latest = await bob['xep_0060'].get_items(svc, 'news', max_items=1, timeout=TIMEOUT)
    r['latest'] = [i['id'] for i in latest['pubsub']['items']]
    byid = await bob['xep_0060'].get_items(svc, 'news', item_ids=['i1'], timeout=TIMEOUT)
    r['by_id'] = [i['payload'].text for i in byid['pubsub']['items']]

    # Bob subscribed; he may not publish to a publishers-only node.
    r['bob_publishes'] = await condition(
        bob['xep_0060'].publish(svc, 'news', payload=entry('no'), timeout=TIMEOUT))
    r['no_such_node'] = await condition(
        bob['xep_0060'].get_items(svc, 'nowhere', timeout=TIMEOUT))

    await ps.retract(svc, 'news', 'i0', notify=True, timeout=TIMEOUT)
    await until(lambda: any(e[0] == 'retract' for e in bob.events), 'the retraction')
    await ps.purge(svc, 'news', timeout=TIMEOUT)
    await until(lambda: any(e[0] == 'purge' for e in bob.events), 'the purge')
    empty = await bob['xep_0060'].get_items(svc, 'news', timeout=TIMEOUT)
    r['after_purge'] = len(empty['pubsub']['items'])
    await ps.delete_node(svc, 'news', timeout=TIMEOUT)
    await until(lambda: any(e[0] == 'delete' for e in bob.events), 'the deletion')
    r['events'] = [e[0] for e in bob.events]
    alice.disconnect()
    bob.disconnect()
    print(json.dumps(r))


if __name__ == '__main__':
    run(main)
