#!/usr/bin/python3
"""XEP-0198 stream resumption across the proxy, with slixmpp.

    smacks_client.py --host H --port P --mode starttls|tls
        --jid A_JID --password A_PW --peer B_JID --peer-password B_PW
        [--before 3] [--during 3] [--timeout 30]

A logs in with stream management (xep_0198, resumption allowed), B logs
in plainly.  B sends A --before messages, A gets them.  Then A's TCP
connection is cut (RST, no </stream:stream>, no TLS close_notify) and B
sends --during messages to A's full JID while A is gone.  A connects again
(a new TCP connection: STARTTLS/TLS, SASL, a new login through nginx) and
resumes the stream (<resume previd=.../>).  Every message must arrive.

Prints event lines ("ENABLED id", "GOT body", "CUT", "RESUMED", ...) and a
final JSON line; exits 0 when the stream was resumed and every message
arrived, non-zero otherwise ("FAIL reason").  Run with /usr/bin/python3.
"""

import argparse
import asyncio
import json
import socket
import ssl
import struct
import sys


def parse():
    p = argparse.ArgumentParser()
    for a in ('host', 'mode', 'jid', 'password', 'peer', 'peer-password'):
        p.add_argument('--' + a, required=True)
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--before', type=int, default=3)
    p.add_argument('--during', type=int, default=3)
    p.add_argument('--timeout', type=float, default=30)
    p.add_argument('--debug', action='store_true')
    return p.parse_args()


def say(*a):
    print(*a, flush=True)


def make_client(jid, password, args, smacks):
    import slixmpp
    c = slixmpp.ClientXMPP(jid, password)
    c.whitespace_keepalive = False
    c.ssl_context.check_hostname = False
    c.ssl_context.verify_mode = ssl.CERT_NONE
    if smacks:
        c.register_plugin('xep_0198')
        # ask for an ack after every stanza: acks flow while messages come
        c['xep_0198'].window = 1
    return c


def connect(c, args):
    if args.mode == 'tls':
        c.connect((args.host, args.port), use_ssl=True, disable_starttls=True)
    else:
        c.connect((args.host, args.port), force_starttls=True)


async def wait_event(c, name, timeout):
    return await c.wait_until(name, timeout)


async def run(args, result):
    loop = asyncio.get_event_loop()
    a = make_client(args.jid, args.password, args, True)
    b = make_client(args.peer, args.peer_password, args, False)

    received = []
    got = asyncio.Event()
    counts = {'session_start': 0, 'session_resumed': 0, 'sm_enabled': 0}

    def on_message(m):
        if m['type'] in ('chat', 'normal') and m['body'].startswith('sm '):
            received.append(m['body'])
            say('GOT %s' % m['body'])
            got.set()

    def count(name):
        def h(_):
            counts[name] += 1
            say(name.upper())
        return h

    a.add_event_handler('message', on_message)
    for name in counts:
        a.add_event_handler(name, count(name))
    a.add_event_handler('sm_failed', lambda s: say('SM_FAILED %s' % s))

    # both online, A with stream management enabled
    enabled = asyncio.ensure_future(wait_event(a, 'sm_enabled', args.timeout))
    connect(a, args)
    connect(b, args)
    await asyncio.gather(wait_event(b, 'session_start', args.timeout), enabled)
    result['jid_before'] = str(a.boundjid.full)
    result['sm_id'] = a['xep_0198'].sm_id
    say('ENABLED %s %s' % (result['jid_before'], result['sm_id']))
    if not result['sm_id']:
        raise RuntimeError('no stream management id: resumption not offered')
    b.send_presence()
    a.send_presence()

    async def wait_for(n):
        while len(set(received)) < n:
            got.clear()
            await got.wait()

    # messages while connected
    for i in range(1, args.before + 1):
        b.send_message(mto=a.boundjid.full, mbody='sm %d' % i, mtype='chat')
    await asyncio.wait_for(wait_for(args.before), 10)
    # let A's acks reach the server before the cut
    await asyncio.sleep(0.3)

    # cut A's TCP connection: RST, no stream end, no TLS close_notify
    sock = a.transport.get_extra_info('socket')
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    lost = asyncio.ensure_future(wait_event(a, 'disconnected', 10))
    a.transport.abort()
    await lost
    say('CUT')

    # messages while A is gone, to its full JID
    for i in range(args.before + 1, args.before + args.during + 1):
        b.send_message(mto=result['jid_before'], mbody='sm %d' % i, mtype='chat')
    await asyncio.sleep(0.5)

    # A comes back through the proxy and resumes
    resumed = asyncio.ensure_future(wait_event(a, 'session_resumed', args.timeout))
    connect(a, args)
    await resumed
    result['jid_after'] = str(a.boundjid.full)
    say('RESUMED %s' % result['jid_after'])
    total = args.before + args.during
    try:
        await asyncio.wait_for(wait_for(total), 10)
    except asyncio.TimeoutError:
        pass

    result['received'] = received
    result['counts'] = counts
    missing = ['sm %d' % i for i in range(1, total + 1) if 'sm %d' % i not in received]
    result['missing'] = missing
    for c in (a, b):
        try:
            await asyncio.wait_for(c.disconnect(wait=1), 3)
        except Exception:
            c.abort()
    return not missing and counts['session_resumed'] == 1 \
        and counts['session_start'] == 1 and result['jid_after'] == result['jid_before']


def main():
    args = parse()
    import logging
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.CRITICAL)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    result = {}
    code = 0
    try:
        ok = loop.run_until_complete(asyncio.wait_for(run(args, result), args.timeout))
        if not ok:
            say('FAIL resumption incomplete')
            code = 6
    except asyncio.TimeoutError:
        say('FAIL timeout')
        code = 7
    except Exception as e:
        say('FAIL %s: %s' % (type(e).__name__, e))
        code = 3
    say(json.dumps(result, sort_keys=True))
    return code


if __name__ == '__main__':
    sys.exit(main())
