#!/usr/bin/python3
"""Log two real XMPP clients (slixmpp) in and pass a message both ways.

    xmpp_roundtrip.py --host H --port P --mode starttls|direct|plain \
        --a JID PASS [--b JID PASS] [--login-only] [--timeout 20] [--mech PLAIN]
        [--tls-max 1.2] [--djabberd]

Modes:
  starttls  STARTTLS is required before authentication
  direct    TLS from the first byte (XEP-0368), ALPN "xmpp-client"
  plain     no TLS at all; SASL PLAIN over plain TCP is allowed
Certificates are never verified (tests use self-signed ones).

Full mode: A and B log in and bind, A sends B (its full JID) a random body,
B answers, A checks the answer.  --login-only: only A logs in, binds and
disconnects.

On success prints one JSON line and exits 0.  Otherwise prints
"FAIL <reason>" on stderr and exits with:
  2 usage, 3 connection/TLS/stream failure, 4 authentication refused,
  5 resource binding failed, 6 message not delivered, 7 overall timeout.

Run it with /usr/bin/python3 (Debian's python, which sees python3-slixmpp).
slixmpp's process(timeout=) is not used: the asyncio loop is driven here.
"""

import argparse
import asyncio
import json
import logging
import secrets
import ssl
import sys
import time

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_AUTH = 4
EXIT_BIND = 5
EXIT_MESSAGE = 6
EXIT_TIMEOUT = 7


class Failure(Exception):
    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def is_tls(client):
    return isinstance(client.socket, (ssl.SSLSocket, ssl.SSLObject))


class Session:
    """One client connection and what happened to it."""

    def __init__(self, name, jid, password, args, loop):
        import slixmpp

        self.name = name
        self.args = args
        self.stage = 'created'
        self.done = loop.create_future()      # set on session_start / failure
        self.client = c = slixmpp.ClientXMPP(jid, password)
        c.whitespace_keepalive = False
        c.ssl_context.check_hostname = False
        c.ssl_context.verify_mode = ssl.CERT_NONE
        if args.mode == 'direct':
            c.ssl_context.set_alpn_protocols(['xmpp-client'])
        if args.mode == 'plain':
            c['feature_mechanisms'].unencrypted_plain = True
        if args.mech:
            c['feature_mechanisms'].use_mech = args.mech
        if args.tls_max == '1.2':
            c.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
        if args.djabberd:
            c.register_plugin('xep_0030')
            # no session iq (optional since RFC 6121): DJabberd answers it
            # from the full JID, which slixmpp does not take as the answer
            async def no_session(features, c=c):
                await c.session_bind_event.wait()    # after the bind
                c.sessionstarted = True
                c.event('session_start')
                return False
            c._stream_feature_handlers['session'] = (no_session, False)

        # In the TLS modes never authenticate over a plain connection, even
        # with mechanisms that would allow it (slixmpp does not enforce it).
        if args.mode != 'plain':
            handler, restart = c._stream_feature_handlers['mechanisms']

            def guarded(features, handler=handler):
                if not is_tls(c):
                    self.fail(EXIT_CONNECT, 'server offered SASL on a connection '
                              'without TLS (no STARTTLS?)')
                    return True
                return handler(features)

            c._stream_feature_handlers['mechanisms'] = (guarded, restart)

        c.add_event_handler('connected', lambda _: self.set_stage('connected'))
        c.add_event_handler('tls_success', lambda _: self.set_stage('tls'))
        c.add_event_handler('auth_success', lambda _: self.set_stage('authenticated'))
        c.add_event_handler('session_bind', lambda _: self.set_stage('bound'))
        c.add_event_handler('session_start', self.on_session_start)
        c.add_event_handler('stream_negotiated', self.on_negotiated)
        c.add_event_handler('failed_auth', self.on_failed_auth)
        c.add_event_handler('failed_all_auth',
                            lambda _: self.fail(EXIT_AUTH, 'no usable SASL mechanism '
                                                'or all mechanisms refused'))
        c.add_event_handler('connection_failed', self.on_connection_failed)
        c.add_event_handler('stream_error', self.on_stream_error)
        c.add_event_handler('disconnected', self.on_disconnected)
        c.add_event_handler('ssl_invalid_chain',
                            lambda e: self.fail(EXIT_CONNECT, 'TLS failed: %s' % e))

    def set_stage(self, stage):
        self.stage = stage

    def fail(self, code, reason):
        if not self.done.done():
            self.done.set_exception(Failure(code, '%s: %s' % (self.name, reason)))
        self.client.abort()

    async def on_session_start(self, _):
        self.stage = 'session'
        if self.args.mode != 'plain' and not is_tls(self.client):
            self.fail(EXIT_CONNECT, 'session started without TLS')
            return
        self.client.send_presence()
        if self.args.djabberd:
            # DJabberd drops a message to a resource whose presence it has
            # not handled yet: an iq answered after it says it has
            try:
                await self.client['xep_0030'].get_info(
                    jid=self.client.boundjid.domain, timeout=self.args.timeout)
            except Exception as e:
                self.fail(EXIT_CONNECT, 'disco#info after presence: %s' % (e,))
                return
        if not self.done.done():
            self.done.set_result(True)

    def on_negotiated(self, _):
        # every offered feature was handled and no stream restart is due
        if self.stage in ('bound', 'session'):
            return
        if self.stage == 'authenticated':
            self.fail(EXIT_BIND, 'stream negotiated without resource binding')
        else:
            self.fail(EXIT_CONNECT, 'no way to authenticate with the offered '
                      'features (stage %s; TLS required by the server?)' % self.stage)

    def on_failed_auth(self, stanza):
        cond = ''
        try:
            cond = stanza['condition'] or ''
            text = stanza['text'] or ''
            cond = (cond + ' ' + text).strip()
        except Exception:
            pass
        self.fail(EXIT_AUTH, 'authentication refused (%s)' % (cond or 'failure'))

    def on_connection_failed(self, err):
        self.fail(EXIT_CONNECT, 'connection failed: %s' % (err,))

    def on_stream_error(self, err):
        try:
            cond = err['condition']
        except Exception:
            cond = str(err)
        code = EXIT_AUTH if self.stage == 'connected' and cond == 'not-authorized' \
            else EXIT_CONNECT
        self.fail(code, 'stream error <%s/> at stage %s' % (cond, self.stage))

    def on_disconnected(self, reason):
        if self.done.done():
            return
        if self.stage == 'authenticated':
            code = EXIT_BIND
        else:
            code = EXIT_CONNECT
        self.fail(code, 'disconnected at stage %s%s'
                  % (self.stage, (' (%s)' % reason) if reason else ''))

    def connect(self):
        self.stage = 'connecting'
        addr = (self.args.host, self.args.port)
        if self.args.mode == 'direct':
            self.client.connect(addr, use_ssl=True, disable_starttls=True)
        elif self.args.mode == 'plain':
            self.client.connect(addr, disable_starttls=True)
        else:
            self.client.connect(addr, force_starttls=True)

    def tls_info(self):
        s = self.client.socket
        if isinstance(s, (ssl.SSLSocket, ssl.SSLObject)):
            return {'version': s.version(), 'cipher': s.cipher()[0],
                    'alpn': s.selected_alpn_protocol()}
        return None

    async def close(self):
        try:
            fut = self.client.disconnect(wait=1.0)
            if fut is not None:
                await asyncio.wait_for(fut, 3)
        except Exception:
            self.client.abort()


async def run(args, loop, sessions):
    t0 = time.monotonic()
    a = Session('A', args.a[0], args.a[1], args, loop)
    sessions.append(a)
    b = None
    if not args.login_only:
        b = Session('B', args.b[0], args.b[1], args, loop)
        sessions.append(b)

    try:
        for s in sessions:
            s.connect()
        await asyncio.gather(*(s.done for s in sessions))
        login_ms = (time.monotonic() - t0) * 1000
        result = {
            'ok': True, 'mode': args.mode,
            'a': str(a.client.boundjid.full),
            'login_ms': round(login_ms, 1),
            'tls': a.tls_info(),
        }
        if b is None:
            return result

        result['b'] = str(b.client.boundjid.full)
        token = secrets.token_hex(8)
        answer = loop.create_future()

        def on_b_message(msg):
            if msg['type'] in ('chat', 'normal') and msg['body'] == 'ping ' + token:
                msg.reply('pong ' + token).send()

        def on_a_message(msg):
            if msg['body'] == 'pong ' + token and not answer.done():
                answer.set_result(str(msg['from']))

        b.client.add_event_handler('message', on_b_message)
        a.client.add_event_handler('message', on_a_message)

        t1 = time.monotonic()
        a.client.send_message(mto=b.client.boundjid.full, mbody='ping ' + token,
                              mtype='chat')
        try:
            sender = await asyncio.wait_for(answer, args.timeout)
        except asyncio.TimeoutError:
            raise Failure(EXIT_MESSAGE, 'no reply from B within %ss' % args.timeout)
        result['rtt_ms'] = round((time.monotonic() - t1) * 1000, 2)
        if sender != result['b']:
            raise Failure(EXIT_MESSAGE, 'reply came from %s, expected %s'
                          % (sender, result['b']))
        result['b_tls'] = b.tls_info()
        return result
    finally:
        for s in sessions:
            await s.close()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--mode', choices=('starttls', 'direct', 'plain'), required=True)
    p.add_argument('--a', nargs=2, metavar=('JID', 'PASS'), required=True)
    p.add_argument('--b', nargs=2, metavar=('JID', 'PASS'))
    p.add_argument('--login-only', action='store_true')
    p.add_argument('--timeout', type=float, default=20)
    p.add_argument('--mech', help='force this SASL mechanism (e.g. PLAIN)')
    p.add_argument('--tls-max', choices=('1.2', '1.3'), default='1.3',
                   help='the highest TLS version to offer')
    p.add_argument('--djabberd', action='store_true',
                   help='DJabberd: no session iq (RFC 3921), and presence '
                   'confirmed before messages')
    p.add_argument('--debug', action='store_true', help='slixmpp debug log on stderr')
    args = p.parse_args(argv)
    if not args.login_only and not args.b:
        p.error('--b is required unless --login-only')
    return args


def main(argv):
    try:
        args = parse_args(argv)
    except SystemExit as e:
        return EXIT_USAGE if e.code else EXIT_OK

    logging.basicConfig(level=logging.DEBUG if args.debug else logging.CRITICAL,
                        format='%(levelname)s %(name)s %(message)s')

    try:
        import slixmpp  # noqa: F401
    except ImportError as e:
        print('FAIL slixmpp is not importable (%s); run with /usr/bin/python3 '
              'and install python3-slixmpp' % e, file=sys.stderr)
        return EXIT_USAGE

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    code = EXIT_OK
    sessions = []
    try:
        result = loop.run_until_complete(
            asyncio.wait_for(run(args, loop, sessions), args.timeout))
        print(json.dumps(result, sort_keys=True))
    except Failure as f:
        print('FAIL %s' % f.reason, file=sys.stderr)
        code = f.code
    except asyncio.TimeoutError:
        print('FAIL overall timeout of %ss (%s)' % (args.timeout, ', '.join(
            '%s at stage %s' % (s.name, s.stage) for s in sessions)), file=sys.stderr)
        code = EXIT_TIMEOUT
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=2))
        except Exception:
            pass
        loop.close()
    return code


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
