package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Limits on what a client sends, so that no request can hold the daemon.
const (
	maxBody      = 16 << 20 // a request or a WebSocket message (a base64 Metalink)
	maxBatch     = 1000     // calls in one batch or system.multicall
	maxMetalink  = 8 << 20  // a Metalink's bytes, decoded
	maxURIs      = 256      // URIs of one addUri
	errUnauthMsg = "Unauthorized"
)

// JSON-RPC 2.0 error codes aria2 uses besides its code 1.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeInvalidParams  = -32602
)

// response is a JSON-RPC response.
type response struct {
	ID      json.RawMessage `json:"id"`
	JSONRPC string          `json:"jsonrpc"`
	Result  any             `json:"result,omitempty"`
	Error   *respError      `json:"error,omitempty"`
}

type respError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// call is one method call, with where it came from.
type call struct {
	method string
	params []json.RawMessage
	conn   *wsConn // nil over HTTP POST
}

// handleBody answers a JSON-RPC request body (one request, or a batch):
// the response's bytes and, for HTTP, aria2's status code.
func (d *Daemon) handleBody(ctx context.Context, body []byte, conn *wsConn) ([]byte, int) {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		var batch []json.RawMessage
		if err := json.Unmarshal(body, &batch); err != nil {
			return encode(errResponse(nil, codeParseError, "Parse error.")), 500
		}
		if len(batch) > maxBatch {
			return encode(errResponse(nil, codeInvalidRequest, fmt.Sprintf("Invalid Request: a batch of %d calls, more than %d.", len(batch), maxBatch))), 400
		}
		out := make([]response, 0, len(batch))
		for _, raw := range batch {
			if len(bytes.TrimSpace(raw)) == 0 || bytes.TrimSpace(raw)[0] != '{' {
				continue // aria2 skips what is not an object
			}
			out = append(out, d.handleOne(ctx, raw, conn))
		}
		return encode(out), 200
	}
	if len(body) == 0 || body[0] != '{' {
		if !json.Valid(body) {
			return encode(errResponse(nil, codeParseError, "Parse error.")), 500
		}
		return encode(errResponse(nil, codeInvalidRequest, "Invalid Request.")), 400
	}
	r := d.handleOne(ctx, body, conn)
	status := 200
	if r.Error != nil {
		status = map[int]int{1: 400, codeInvalidRequest: 400}[r.Error.Code]
		if status == 0 {
			status = 500
		}
	}
	return encode(r), status
}

func encode(v any) []byte {
	if r, ok := v.(response); ok && r.Error == nil {
		if raw, ok := r.Result.(json.RawMessage); ok {
			// A result the daemon encoded itself (a list of statuses):
			// encoding/json would check and compact it again.
			b := make([]byte, 0, len(raw)+len(r.ID)+32)
			b = append(b, `{"id":`...)
			b = append(b, r.ID...)
			b = append(b, `,"jsonrpc":"2.0","result":`...)
			b = append(b, raw...)
			return append(b, '}')
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(errResponse(nil, 1, "internal error: "+err.Error()))
	}
	return b
}

func errResponse(id json.RawMessage, code int, msg string) response {
	if id == nil {
		id = json.RawMessage("null")
	}
	return response{ID: id, JSONRPC: "2.0", Error: &respError{Code: code, Message: msg}}
}

// handleOne answers one request object.
func (d *Daemon) handleOne(ctx context.Context, raw []byte, conn *wsConn) response {
	var req map[string]json.RawMessage
	if err := json.Unmarshal(raw, &req); err != nil {
		return errResponse(nil, codeParseError, "Parse error.")
	}
	id, ok := req["id"]
	if !ok {
		return errResponse(nil, codeInvalidRequest, "Invalid Request.")
	}
	var method string
	if err := json.Unmarshal(req["method"], &method); err != nil || req["method"] == nil {
		return errResponse(id, codeInvalidRequest, "Invalid Request.")
	}
	var params []json.RawMessage
	if p, ok := req["params"]; ok && string(p) != "null" {
		if err := json.Unmarshal(p, &params); err != nil {
			return errResponse(id, codeInvalidParams, "Invalid params.")
		}
	}
	res, err := d.dispatch(ctx, &call{method: method, params: params, conn: conn})
	if err != nil {
		return errResponse(id, 1, err.Error())
	}
	return response{ID: id, JSONRPC: "2.0", Result: res}
}

// dispatch runs one call: system.listMethods and
// system.listNotifications need no token (as in aria2), system.multicall
// checks the token of each call it holds, every other method its own.
func (d *Daemon) dispatch(ctx context.Context, c *call) (any, error) {
	switch c.method {
	case "system.listMethods":
		return methodNames(), nil
	case "system.listNotifications":
		return notificationNames, nil
	case "system.multicall":
		return d.multicall(ctx, c)
	}
	if err := d.authorize(c); err != nil {
		return nil, err
	}
	m, ok := methods[c.method]
	if !ok {
		return nil, rpcErrorf("No such method: %s", c.method)
	}
	return m(ctx, d, c)
}

// authorize takes the "token:SECRET" first parameter off c and checks it,
// in constant time. A WebSocket whose call had the right token gets the
// notifications from then on.
func (d *Daemon) authorize(c *call) error {
	var token string
	if len(c.params) > 0 {
		var s string
		if json.Unmarshal(c.params[0], &s) == nil && strings.HasPrefix(s, "token:") {
			token, c.params = s[len("token:"):], c.params[1:]
		}
	}
	if !d.secretOK(token) {
		return errors.New(errUnauthMsg)
	}
	if c.conn != nil {
		c.conn.authed.Store(true)
	}
	return nil
}

// secretOK compares token with the secret in constant time; without a
// secret (a unix socket), any token passes.
func (d *Daemon) secretOK(token string) bool {
	if d.opts.Secret == "" {
		return true
	}
	// Digests of equal length: the time tells neither the secret's bytes
	// nor its length.
	got, want := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(d.opts.Secret))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// multicall runs system.multicall as aria2: each result in a list of one,
// each failure as {code, message}.
func (d *Daemon) multicall(ctx context.Context, c *call) (any, error) {
	if len(c.params) == 0 {
		return nil, errors.New("system.multicall: the list of calls is missing")
	}
	var specs []json.RawMessage
	if err := json.Unmarshal(c.params[0], &specs); err != nil {
		return nil, errors.New("system.multicall: the parameter at 0 is not a list")
	}
	if len(specs) > maxBatch {
		return nil, fmt.Errorf("system.multicall: %d calls, more than %d", len(specs), maxBatch)
	}
	out := make([]any, 0, len(specs))
	for _, raw := range specs {
		var spec struct {
			MethodName *string           `json:"methodName"`
			Params     []json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(raw, &spec); err != nil {
			out = append(out, respError{Code: 1, Message: "system.multicall expected struct."})
			continue
		}
		switch {
		case spec.MethodName == nil:
			out = append(out, respError{Code: 1, Message: "Missing methodName."})
			continue
		case *spec.MethodName == "system.multicall":
			out = append(out, respError{Code: 1, Message: "Recursive system.multicall forbidden."})
			continue
		}
		res, err := d.dispatch(ctx, &call{method: *spec.MethodName, params: spec.Params, conn: c.conn})
		if err != nil {
			out = append(out, respError{Code: 1, Message: err.Error()})
			continue
		}
		out = append(out, []any{res})
	}
	return out, nil
}

// Parameter readers: aria2's messages for a parameter of the wrong type.
func paramErr(i int) error { return rpcErrorf("The parameter at %d has wrong type.", i) }

func pString(p []json.RawMessage, i int) (string, error) {
	var s string
	if i >= len(p) || json.Unmarshal(p[i], &s) != nil {
		return "", paramErr(i)
	}
	return s, nil
}

// pInt reads an optional integer: ok is false when it is missing.
func pInt(p []json.RawMessage, i int) (n int, ok bool, err error) {
	if i >= len(p) || string(p[i]) == "null" {
		return 0, false, nil
	}
	if err := json.Unmarshal(p[i], &n); err != nil {
		return 0, false, paramErr(i)
	}
	return n, true, nil
}

func pDict(p []json.RawMessage, i int) (map[string]json.RawMessage, error) {
	if i >= len(p) || string(p[i]) == "null" {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(p[i], &m); err != nil {
		return nil, paramErr(i)
	}
	return m, nil
}

func pStrings(p []json.RawMessage, i int) ([]string, error) {
	if i >= len(p) || string(p[i]) == "null" {
		return nil, nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(p[i], &raw); err != nil {
		return nil, paramErr(i)
	}
	out := make([]string, 0, len(raw))
	for _, r := range raw {
		var s string
		if json.Unmarshal(r, &s) == nil { // aria2 skips what is not a string
			out = append(out, s)
		}
	}
	return out, nil
}
