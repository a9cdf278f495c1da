#!/usr/bin/python3
"""aioxmpp as an application would use it; see README for the convention."""

import argparse
import asyncio
import logging
import sys


def parse():
    p = argparse.ArgumentParser()
    for a in ('host', 'mode', 'jid', 'password', 'to', 'body', 'expect'):
        p.add_argument('--' + a, required=True)
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--timeout', type=float, default=20)
    p.add_argument('--debug', action='store_true')
    return p.parse_args()


async def run(args):
    import aioxmpp
    import aioxmpp.connector
    import aioxmpp.dispatcher

    connector = (aioxmpp.connector.XMPPOverTLSConnector() if args.mode == 'tls'
                 else aioxmpp.connector.STARTTLSConnector())
    client = aioxmpp.PresenceManagedClient(
        aioxmpp.JID.fromstr(args.jid),
        aioxmpp.make_security_layer(args.password, no_verify=True),
        override_peer=[(args.host, args.port, connector)],
    )
    client.presence = aioxmpp.PresenceState(True)
    got = asyncio.get_event_loop().create_future()

    def on_message(msg):
        body = msg.body.any() if msg.body else None
        if body == args.expect and not got.done():
            got.set_result(str(msg.from_))

    disp = client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher)
    disp.register_callback(aioxmpp.MessageType.CHAT, None, on_message)

    async with client.connected():
        print('BOUND %s' % (client.local_jid,), flush=True)
        msg = aioxmpp.Message(to=aioxmpp.JID.fromstr(args.to),
                              type_=aioxmpp.MessageType.CHAT)
        msg.body[None] = args.body
        await client.send(msg)
        print('SENT', flush=True)
        sender = await got
        print('RECEIVED %s %s' % (sender, args.expect), flush=True)


def main():
    args = parse()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.CRITICAL)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(asyncio.wait_for(run(args), args.timeout))
    except asyncio.TimeoutError:
        print('FAIL timeout', flush=True)
        return 7
    except Exception as e:
        if args.debug:
            import traceback
            traceback.print_exc()
        print("FAIL %s: %s" % (type(e).__name__, e), flush=True)
        return 3
    return 0


if __name__ == '__main__':
    sys.exit(main())
