"""Drives an exchange's catalog service with slixmpp's XEP-0050 plugin (a
stock client): lists the commands through disco, then sends the paper's §6
constraint_catalog_resources request (its <iodata>, parsed from the fixture)
and a list_clouds. Prints one JSON line; exits non-zero on any failure."""

import argparse
import asyncio
import json
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp

TIMEOUT = 30
NS_COMMANDS = 'http://jabber.org/protocol/commands'
NS_IODATA = 'urn:xmpp:tmp:io-data'
NS_RES = 'http://www.csp/resOntology'


class Bot(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.register_plugin('xep_0030')
        self.register_plugin('xep_0050')
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.session = asyncio.get_event_loop().create_future()
        self.add_event_handler('session_start', lambda _: self.session.done() or self.session.set_result(True))


async def main(args):
    bot = Bot(f'user@{args.domain}', 'pw')
    bot.connect(('127.0.0.1', args.port))
    await asyncio.wait_for(bot.session, TIMEOUT)
    service = f'service.{args.domain}'
    items = await bot['xep_0050'].get_commands(service, timeout=TIMEOUT)
    nodes = sorted(i[1] for i in items['disco_items']['items'])

    paper = ET.fromstring(open(args.fixture).read())
    iodata = paper.find(f'{{{NS_COMMANDS}}}command/{{{NS_IODATA}}}iodata')
    assert iodata is not None, 'no iodata in the fixture'
    res = await bot['xep_0050'].send_command(
        service, 'constraint_catalog_resources', payload=iodata, timeout=TIMEOUT)
    cmd = res.xml.find(f'{{{NS_COMMANDS}}}command')
    status = cmd.get('status')
    sessionid = cmd.get('sessionid')
    names = [e.text for e in cmd.iter(f'{{{NS_RES}}}cloudName')]

    listed = await bot['xep_0050'].send_command(service, 'list_clouds', timeout=TIMEOUT)
    clouds = [e.get('name') for e in listed.xml.iter(f'{{{NS_RES}}}cloud')]
    bot.disconnect()
    print(json.dumps({'nodes': nodes, 'status': status, 'sessionid': sessionid,
                      'matching': names, 'clouds': len(clouds)}))
    ok = (status == 'completed' and sessionid and names == ['cloud2', 'cloud5']
          and 'constraint_catalog_resources' in nodes and len(clouds) == 12)
    return 0 if ok else 1


if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--domain', required=True)
    p.add_argument('--fixture', required=True)
    sys.exit(asyncio.get_event_loop().run_until_complete(main(p.parse_args())))
