package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/metalink"
	"github.com/dlflow/dlflow/pipeline"
)

// readPos reads addUri's and addMetalink's position: nil when missing.
func readPos(p []json.RawMessage, i int) (*int, error) {
	n, ok, err := pInt(p, i)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, nil
	case n < 0:
		return nil, rpcErrorf("Position must be greater than or equal to 0.")
	}
	return &n, nil
}

func mAddURI(_ context.Context, d *Daemon, c *call) (any, error) {
	list, err := pStrings(c.params, 0)
	if err != nil || len(c.params) == 0 {
		return nil, paramErr(0)
	}
	if len(list) == 0 {
		return nil, rpcErrorf("URI is not provided.")
	}
	if len(list) > maxURIs {
		return nil, rpcErrorf("%d URIs, more than %d", len(list), maxURIs)
	}
	for _, u := range list {
		if err := checkURI(u); err != nil {
			return nil, err
		}
	}
	opts, err := pDict(c.params, 1)
	if err != nil {
		return nil, err
	}
	pos, err := readPos(c.params, 2)
	if err != nil {
		return nil, err
	}
	r := &record{URIs: list}
	if err := r.Opts.apply(d.e.root, opts); err != nil {
		return nil, err
	}
	if err := d.e.check(r); err != nil {
		return nil, err
	}
	r.Status = statusWaiting
	if r.Opts.StartPaused {
		r.Status = statusPaused
	}
	gids, err := d.e.add([]*record{r}, pos)
	if err != nil {
		return nil, err
	}
	return gids[0], nil
}

// check refuses a task the library would refuse, before it is queued:
// the same checks as the command line's flags (Client.Check, no I/O).
func (e *Engine) check(r *record) error {
	if r.Metalink != "" {
		return nil // MetalinkRequests checked it
	}
	req := r.request(filepath.Join(e.root, r.Opts.Dir), 0)
	if err := e.client.Check(req); err != nil {
		return fmt.Errorf("refused: %w", err)
	}
	return nil
}

// mAddMetalink takes a Metalink's content, base64 (never a path: a client
// cannot make the daemon read its files), keeps a copy in the state
// directory for restarts, and queues one task per file.
func mAddMetalink(ctx context.Context, d *Daemon, c *call) (any, error) {
	b64, err := pString(c.params, 0)
	if err != nil {
		return nil, err
	}
	if base64.StdEncoding.DecodedLen(len(b64)) > maxMetalink {
		return nil, rpcErrorf("the metalink is larger than %d bytes", maxMetalink)
	}
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, rpcErrorf("the metalink is not base64: %v", err)
	}
	opts, err := pDict(c.params, 1)
	if err != nil {
		return nil, err
	}
	pos, err := readPos(c.params, 2)
	if err != nil {
		return nil, err
	}
	var o taskOpts
	if err := o.apply(d.e.root, opts); err != nil {
		return nil, err
	}
	path, err := d.e.keepMetalink(data)
	if err != nil {
		return nil, err
	}
	tmpl := &dlflow.Request{Dir: filepath.Join(d.e.root, o.Dir)}
	reqs, err := d.e.client.MetalinkRequests(ctx, path, tmpl, nil)
	if err != nil {
		return nil, rpcErrorf("metalink: %v", err)
	}
	// The library keeps the parsed document inside its requests; the
	// URLs and sizes are read here again for getUris and getFiles.
	files, _ := metalink.ParseAll(bytes.NewReader(data))
	recs := make([]*record, 0, len(reqs))
	for _, req := range reqs {
		r := &record{Opts: o, Metalink: path, MetalinkFile: req.MetalinkFile, Status: statusWaiting}
		if i := req.MetalinkFile - 1; i >= 0 && i < len(files) {
			for _, u := range files[i].URLs {
				r.URIs = append(r.URIs, u.URL)
			}
			r.Total = max(files[i].Size, 0)
		}
		r.Opts.Checksum = ""
		if len(reqs) > 1 {
			r.Opts.Out = "" // each file has its own name
		}
		if o.StartPaused {
			r.Status = statusPaused
		}
		recs = append(recs, r)
	}
	return d.e.add(recs, pos)
}

// keepMetalink writes data to the state directory under its hash.
func (e *Engine) keepMetalink(data []byte) (string, error) {
	sum := sha256.Sum256(data)
	dir := filepath.Join(e.stateDir, "metalink")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("metalink: %w", err)
	}
	path := filepath.Join(dir, hex.EncodeToString(sum[:])+".meta4")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("metalink: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("metalink: %w", err)
	}
	return path, nil
}

// taskOptions is aria2's getOption of t.
func (e *Engine) taskOptions(t *task) map[string]any {
	o := t.Opts
	m := map[string]any{"dir": e.taskDir(t)}
	if o.Out != "" {
		m["out"] = o.Out
	}
	if o.Split > 0 {
		m["split"] = strconv.Itoa(o.Split)
	}
	if o.MaxConn > 0 {
		m["max-connection-per-server"] = strconv.Itoa(o.MaxConn)
	}
	if len(o.Header) > 0 {
		m["header"] = strings.Join(o.Header, "\n")
	}
	if o.Checksum != "" {
		m["checksum"] = o.Checksum
	}
	m["max-download-limit"] = itoa(o.LimitRate)
	return m
}

// mChangeOption changes a task's options; an active task restarts with
// them, resuming from its partial file.
func mChangeOption(_ context.Context, d *Daemon, c *call) (any, error) {
	gid, err := pString(c.params, 0)
	if err != nil {
		return nil, err
	}
	opts, err := pDict(c.params, 1)
	if err != nil || opts == nil {
		return nil, paramErr(1)
	}
	e := d.e
	return "OK", e.apply(func() ([]op, []note, error) {
		t, err := e.lookup(gid)
		if err != nil {
			return nil, nil, err
		}
		if isStopped(t.Status) {
			return nil, nil, rpcErrorf("Cannot change option for GID#%s", t.GID)
		}
		o := t.Opts
		o.Header = nil // a header given replaces the task's
		if _, ok := opts["header"]; !ok {
			o.Header = t.Opts.Header
		}
		if err := o.apply(e.root, opts); err != nil {
			return nil, nil, err
		}
		r := t.record
		r.Opts = o
		if err := e.check(&r); err != nil {
			return nil, nil, err
		}
		t.Opts = o
		if t.Status == statusActive && t.dl != nil && t.StopAs == "" {
			t.StopAs = stopRestart
			t.dl.Cancel()
		}
		return []op{e.taskPut(t)}, nil, nil
	})
}

func mGetGlobalOption(_ context.Context, d *Daemon, _ *call) (any, error) {
	e := d.e
	e.mu.Lock()
	defer e.mu.Unlock()
	return map[string]string{
		"dir":                        e.root,
		"max-concurrent-downloads":   strconv.Itoa(e.jobs),
		"max-overall-download-limit": itoa(e.overallLimit),
		"max-download-limit":         "0",
		"max-download-result":        strconv.Itoa(e.opts.MaxResults),
		"max-connection-per-server":  "1",
		"split":                      "5",
	}, nil
}

// mChangeGlobalOption sets max-concurrent-downloads and
// max-overall-download-limit (others are ignored, as aria2 ignores those
// it cannot change) until the daemon stops: as with aria2, the next start
// takes its flags. A new limit restarts the active tasks with their share
// of it, resuming from their partial files.
func mChangeGlobalOption(_ context.Context, d *Daemon, c *call) (any, error) {
	opts, err := pDict(c.params, 0)
	if err != nil || opts == nil {
		return nil, paramErr(0)
	}
	e := d.e
	return "OK", e.apply(func() ([]op, []note, error) {
		jobs, limit := e.jobs, e.overallLimit
		for name, raw := range opts {
			v, ok := optionString(raw)
			switch {
			case name != "max-concurrent-downloads" && name != "max-overall-download-limit":
				continue
			case !ok:
				return nil, nil, &optionError{Name: name, Value: string(raw), Why: "want a string"}
			case name == "max-concurrent-downloads":
				n, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil || n < 0 || n > 10000 {
					return nil, nil, &optionError{Name: name, Value: v, Why: "want a whole number from 0 to 10000"}
				}
				jobs = n
			default:
				n, err := pipeline.ParseByteSize(v)
				if err != nil {
					return nil, nil, &optionError{Name: name, Value: v, Why: err.Error()}
				}
				limit = int64(n)
			}
		}
		restart := limit != e.overallLimit || (limit > 0 && jobs != e.jobs)
		e.jobs, e.overallLimit = jobs, limit
		if restart {
			for _, t := range e.active {
				if t.dl != nil && t.StopAs == "" {
					t.StopAs = stopRestart
					t.dl.Cancel()
				}
			}
		}
		ops, notes := e.schedule()
		return ops, notes, nil
	})
}

// globalStat is aria2's getGlobalStat.
func (e *Engine) globalStat() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var speed int64
	for _, t := range e.active {
		if t.dl != nil {
			speed += int64(t.dl.Progress().Rate)
		}
	}
	return map[string]string{
		"downloadSpeed": itoa(speed), "uploadSpeed": "0",
		"numActive": strconv.Itoa(len(e.active)), "numWaiting": strconv.Itoa(len(e.waiting)),
		"numStopped": strconv.Itoa(len(e.stopped)), "numStoppedTotal": strconv.Itoa(e.stoppedTotal),
	}
}
