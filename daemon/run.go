package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dlflow/dlflow"
	"github.com/dlflow/dlflow/pipeline"
)

// schedule starts waiting tasks, first in the queue first, while fewer
// than jobs run. Called with e.mu held.
func (e *Engine) schedule() ([]op, []note) {
	var ops []op
	var notes []note
	for len(e.active) < e.jobs && !e.closed {
		i := slices.IndexFunc(e.waiting, func(t *task) bool { return t.Status == statusWaiting })
		if i < 0 {
			break
		}
		t := e.waiting[i]
		ops = append(ops, e.removeWaiting(t)...)
		o, n := e.start(t)
		ops, notes = append(ops, o...), append(notes, n...)
	}
	return ops, notes
}

// limitPerTask is the share of the global rate limit a task gets: the
// limit split over the job slots, so that the sum stays under it.
func (e *Engine) limitPerTask() int64 {
	if e.overallLimit <= 0 {
		return 0
	}
	return max(e.overallLimit/int64(max(e.jobs, 1)), 1)
}

// start runs t's download. Called with e.mu held, t out of the queue.
func (e *Engine) start(t *task) ([]op, []note) {
	e.startSeq++
	t.Status, t.Started, t.Ever, t.StopAs = statusActive, e.startSeq, true, ""
	t.ErrCode, t.ErrMsg = 0, ""
	dir, err := safeDir(e.root, t.Opts.Dir)
	if err != nil {
		return e.toStopped(t, statusError, 16, err.Error())
	}
	req := t.record.request(dir, e.limitPerTask())
	if req.Path == "" && t.Path != "" {
		// The name the library gave it the first time, so that a restart
		// finds its PATH.tmp.
		if rel, err := filepath.Rel(dir, t.Path); err == nil && filepath.IsLocal(rel) {
			req.Path = rel
		}
	}
	if t.crashed && t.Path != "" {
		req.SkipExisting = true
	}
	t.crashed = false
	t.metrics = pipeline.NewMetrics()
	req.Metrics = t.metrics
	req.Hooks.Started = func(d *dlflow.Download) { e.started(t, d) }
	t.lanes = laneMeter{}
	e.active = append(e.active, t)
	d := e.client.Start(e.ctx, req)
	t.dl = d
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		res, err := d.Wait()
		e.finished(t, d, res, err)
	}()
	if t.restarted {
		t.restarted = false
		return []op{e.taskPut(t)}, nil
	}
	return []op{e.taskPut(t)}, []note{{method: "aria2.onDownloadStart", gid: t.GID}}
}

// started records what the probe told: the output and the size.
func (e *Engine) started(t *task, d *dlflow.Download) {
	info := d.Info()
	e.mu.Lock()
	defer e.mu.Unlock()
	if t.dl != d || e.closed {
		return
	}
	t.Path, t.Total = info.Path, info.Size
	e.store.commit(e.taskPut(t)) // the hook must return promptly: not waited for
}

// finished takes the end of t's download d.
func (e *Engine) finished(t *task, d *dlflow.Download, res *dlflow.Result, err error) {
	e.downloaded.Add(max(res.Bytes-res.Resumed, 0))
	e.apply(func() ([]op, []note, error) {
		if t.dl != d {
			return nil, nil, nil
		}
		t.dl = nil
		t.retries += res.Retries
		e.active = slices.DeleteFunc(e.active, func(a *task) bool { return a == t })
		if res.Path != "" {
			t.Path = res.Path
		}
		t.Completed = res.Bytes
		if err == nil && t.Total < res.Bytes {
			t.Total = res.Bytes
		}
		var ops []op
		var notes []note
		stopAs := t.StopAs
		t.StopAs = ""
		switch {
		case stopAs == stopShutdown || e.closed:
			return nil, nil, nil // still active in the session: a restart resumes it
		case err == nil && stopAs != statusRemoved:
			// It ended before the pause or the restart took: its file
			// is whole, and a rerun would find it there.
			ops, notes = e.toStopped(t, statusComplete, 0, "")
		case stopAs == statusPaused:
			t.Status = statusPaused
			ops = append(e.insertWaiting(t, 0), e.taskPut(t))
			notes = []note{{method: "aria2.onDownloadPause", gid: t.GID}}
		case stopAs == stopRestart:
			t.Status, t.restarted = statusWaiting, true
			ops = append(e.insertWaiting(t, 0), e.taskPut(t))
		case stopAs == statusRemoved:
			ops, notes = e.toStopped(t, statusRemoved, codeRemoved, "")
		case err == nil:
			e.log.Info().Str("gid", t.GID).Str("path", t.Path).Int64("bytes", res.Bytes).Msg("task complete")
			ops, notes = e.toStopped(t, statusComplete, 0, "")
		default:
			e.log.Warn().Str("gid", t.GID).Err(err).Msg("task failed")
			ops, notes = e.toStopped(t, statusError, errorCode(err), oneLine(err))
		}
		o, n := e.schedule()
		return append(ops, o...), append(notes, n...), nil
	})
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// toStopped ends t with status, and drops the oldest results beyond
// MaxResults. Called with e.mu held, t neither queued nor active.
func (e *Engine) toStopped(t *task, status string, code int, msg string) ([]op, []note) {
	t.Status, t.ErrCode, t.ErrMsg, t.Stop = status, code, msg, e.nextStop()
	e.stopped = append(e.stopped, t)
	e.stoppedTotal++
	ops := []op{e.taskPut(t), stoppedPut(t)}
	for len(e.stopped) > e.opts.MaxResults {
		ops = append(ops, e.forget(e.stopped[0])...)
	}
	method := map[string]string{statusComplete: "aria2.onDownloadComplete", statusError: "aria2.onDownloadError", statusRemoved: "aria2.onDownloadStop"}[status]
	return ops, []note{{method: method, gid: t.GID}}
}

// forget drops an ended task and its result.
func (e *Engine) forget(t *task) []op {
	e.stopped = slices.DeleteFunc(e.stopped, func(s *task) bool { return s == t })
	delete(e.tasks, t.GID)
	return []op{{bucket: bucketStopped, key: u64key(t.Stop)}, {bucket: bucketTasks, key: []byte(t.GID)}}
}

// aria2's error codes (src/error_code.h) that dlflow's errors map to.
const (
	codeUnknown       = 1
	codeTimeout       = 2
	codeNotFound      = 3
	codeNetwork       = 6
	codeDiskFull      = 9
	codeFileExists    = 13
	codeNameResolve   = 19
	codeMetalinkParse = 20
	codeHTTPProtocol  = 22
	codeHTTPAuth      = 24
	codeOption        = 28
	codeUnavailable   = 29
	codeRemoved       = 31
	codeChecksum      = 32
)

// errorCode is aria2's error code for why a download failed.
func errorCode(err error) int {
	var he *dlflow.HTTPError
	var re *dlflow.RequestError
	var mt *dlflow.MaxTimeError
	var dns *net.DNSError
	var ne net.Error
	var mf *dlflow.MetalinkFilesError
	switch {
	case errors.Is(err, dlflow.ErrNotFound):
		return codeNotFound
	case errors.As(err, &he) && (he.Status == 401 || he.Status == 403):
		return codeHTTPAuth
	case errors.As(err, &he) && he.Status == 503:
		return codeUnavailable
	case errors.As(err, &he):
		return codeHTTPProtocol
	case errors.Is(err, dlflow.ErrCorrupt):
		return codeChecksum
	case errors.Is(err, dlflow.ErrOutputExists):
		return codeFileExists
	case errors.Is(err, dlflow.ErrDiskFull):
		return codeDiskFull
	case errors.As(err, &re):
		return codeOption
	case errors.As(err, &mf):
		return codeMetalinkParse
	case errors.As(err, &mt):
		return codeTimeout
	case errors.As(err, &dns):
		return codeNameResolve
	case errors.As(err, &ne) && ne.Timeout():
		return codeTimeout
	case errors.As(err, &ne):
		return codeNetwork
	}
	return codeUnknown
}

// safeDir returns root/rel, creating what is missing, and refuses a
// symlink on the way (which could lead out of root). rel was checked by
// clientDir.
func safeDir(root, rel string) (string, error) {
	if rel == "" {
		return root, os.MkdirAll(root, 0o755)
	}
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("%q is not inside %s", rel, root)
	}
	p := root
	for _, part := range strings.Split(filepath.Clean(rel), string(filepath.Separator)) {
		p = filepath.Join(p, part)
		st, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return "", fmt.Errorf("directory %s: %w", p, err)
			}
		case err != nil:
			return "", fmt.Errorf("directory %s: %w", p, err)
		case st.Mode()&fs.ModeSymlink != 0:
			return "", fmt.Errorf("directory %s is a symlink, which may point out of %s", p, root)
		case !st.IsDir():
			return "", fmt.Errorf("%s is not a directory", p)
		}
	}
	return p, nil
}
