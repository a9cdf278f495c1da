#!/usr/bin/python3
"""slixmpp as an application would use it; see README for the convention."""

import argparse
import asyncio
import ssl
import sys


def parse():
    p = argparse.ArgumentParser()
    for a in ('host', 'mode', 'jid', 'password', 'to', 'body', 'expect'):
        p.add_argument('--' + a, required=True)
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--timeout', type=float, default=20)
    return p.parse_args()


def main():
    args = parse()
    import slixmpp

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    done = loop.create_future()

    c = slixmpp.ClientXMPP(args.jid, args.password)
    c.whitespace_keepalive = False
    c.ssl_context.check_hostname = False
    c.ssl_context.verify_mode = ssl.CERT_NONE

    def finish(code, msg):
        if not done.done():
            done.set_result((code, msg))

    def on_start(_):
        print('BOUND %s' % c.boundjid.full, flush=True)
        c.send_presence()
        c.send_message(mto=args.to, mbody=args.body, mtype='chat')
        print('SENT', flush=True)

    def on_message(m):
        if m['body'] == args.expect:
            print('RECEIVED %s %s' % (m['from'], m['body']), flush=True)
            finish(0, None)

    c.add_event_handler('session_start', on_start)
    c.add_event_handler('message', on_message)
    c.add_event_handler('failed_auth', lambda s: finish(4, 'authentication failed'))
    c.add_event_handler('connection_failed', lambda e: finish(3, 'connection failed: %s' % e))
    c.add_event_handler('stream_error', lambda e: finish(3, 'stream error: %s' % e))
    c.add_event_handler('disconnected', lambda r: finish(3, 'disconnected'))

    if args.mode == 'tls':
        c.ssl_context.set_alpn_protocols(['xmpp-client'])
        c.connect((args.host, args.port), use_ssl=True, disable_starttls=True)
    else:
        c.connect((args.host, args.port), force_starttls=True)

    try:
        code, msg = loop.run_until_complete(asyncio.wait_for(done, args.timeout))
    except asyncio.TimeoutError:
        code, msg = 7, 'timeout'
    if msg:
        print('FAIL %s' % msg, flush=True)
    try:
        c.disconnect()
        loop.run_until_complete(asyncio.sleep(0.2))
    except Exception:
        pass
    return code


if __name__ == '__main__':
    sys.exit(main())
