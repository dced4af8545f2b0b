"""uvicorn as the server of the decision fronts (the HTTP decision API, the webhook, the
scheduler extender): its protocol with per-phase read deadlines, its loop with a TLS handshake
deadline and a connection budget applied at accept, the listening socket, and a certificate that
can change under it.

Connections that send nothing, or half a request, must not take a front down (issue 28: ~256 of
them turned every `/v1/decide` into a 503). The design, the simplest that holds 1,000 of them:

- Nothing slow holds a thread. uvicorn reads and parses on the event loop (uvloop, httptools); a
  request reaches a worker thread only once its body is complete. A held connection costs a
  descriptor and a few hundred bytes, not a thread.
- Every phase of a connection has a deadline (`Deadlines`): the request line and headers
  (`header_timeout`, counted from the connection's start or the request's first byte; it also
  bounds the TLS handshake), the body (`body_timeout`, from the end of the headers) and keep-alive
  idleness between requests (uvicorn's `timeout_keep_alive`). A client that stops sending is
  dropped when its phase's deadline passes.
- A budget of `max_connections` open connections (handshaking included), kept at accept. A
  connection beyond it first evicts the open connection that has been quiet longest among those
  not being answered (never sent a byte, mid-handshake, mid-headers, mid-body, or idle between
  requests): an attacker's held connections are the quietest, a client's new connection sends its
  request at once. Only when every connection in the budget has a whole request being answered is
  the new one reset, before any TLS work (under overload the handshakes of new connections are
  what the loop would spend its time on): the client sees a refused call at once (the API server
  fails the call, with `failurePolicy: Fail` a rejection), and the requests being answered finish.

uvicorn's own `limit_concurrency` (a 503 beyond that many connections and requests, after the TLS
handshake) stays as a backstop above the budget.

With client authentication (clientauth.py) the handshake itself refuses a client without a
certificate of the client CA, and the protocol closes a connection whose certificate names no
allowed client as soon as the handshake is done, before reading a byte of it. Each request's
scope then names the caller as its certificate does (`CALLER`), for the decision log.

The modules: protocol.py (a connection's deadlines and its requests' scope), one_write.py (a
response's head and body in one write), gate.py (the budget kept at accept), loop.py (the event
loop serving through the gate), tls.py (the certificate that can change), listening.py (the
socket).
"""
