package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"time"
)

type method func(ctx context.Context, d *Daemon, c *call) (any, error)

// methods are the aria2 methods the daemon answers (and dlflow's own).
var methods map[string]method

func init() {
	methods = map[string]method{
		"aria2.addUri":               mAddURI,
		"aria2.addMetalink":          mAddMetalink,
		"aria2.addTorrent":           mNoTorrent,
		"aria2.getPeers":             mNoTorrent,
		"aria2.remove":               gidAction((*Engine).remove),
		"aria2.forceRemove":          gidAction((*Engine).remove),
		"aria2.pause":                gidAction((*Engine).pause),
		"aria2.forcePause":           gidAction((*Engine).pause),
		"aria2.unpause":              gidAction((*Engine).unpause),
		"aria2.pauseAll":             okAction((*Engine).pauseAll),
		"aria2.forcePauseAll":        okAction((*Engine).pauseAll),
		"aria2.unpauseAll":           okAction((*Engine).unpauseAll),
		"aria2.purgeDownloadResult":  okAction((*Engine).purge),
		"aria2.removeDownloadResult": mRemoveResult,
		"aria2.changePosition":       mChangePosition,
		"aria2.tellStatus":           mTellStatus,
		"aria2.tellActive":           mTellActive,
		"aria2.tellWaiting":          mTellWaiting,
		"aria2.tellStopped":          mTellStopped,
		"aria2.getUris":              gidQuery(getUris),
		"aria2.getFiles": gidQuery(func(e *Engine, t *task) (any, error) {
			return json.RawMessage(appendFiles(nil, e.files(t, liveOf(t)))), nil
		}),
		"aria2.getServers":         gidQuery(getServers),
		"aria2.getOption":          gidQuery(func(e *Engine, t *task) (any, error) { return e.taskOptions(t), nil }),
		"aria2.changeOption":       mChangeOption,
		"aria2.getGlobalOption":    mGetGlobalOption,
		"aria2.changeGlobalOption": mChangeGlobalOption,
		"aria2.getGlobalStat":      func(_ context.Context, d *Daemon, _ *call) (any, error) { return d.e.globalStat(), nil },
		"aria2.getVersion":         mGetVersion,
		"aria2.getSessionInfo": func(_ context.Context, d *Daemon, _ *call) (any, error) {
			return map[string]string{"sessionId": d.e.sessionID}, nil
		},
		"aria2.saveSession":   mSaveSession,
		"aria2.shutdown":      mShutdown,
		"aria2.forceShutdown": mShutdown,
		"dlflow.subscribe":    mSubscribe,
		"dlflow.unsubscribe":  mUnsubscribe,
	}
}

var notificationNames = []string{"aria2.onDownloadStart", "aria2.onDownloadPause", "aria2.onDownloadStop", "aria2.onDownloadComplete", "aria2.onDownloadError"}

func methodNames() []string {
	names := []string{"system.multicall", "system.listMethods", "system.listNotifications"}
	for n := range methods {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func gidAction(f func(*Engine, string) (string, error)) method {
	return func(_ context.Context, d *Daemon, c *call) (any, error) {
		gid, err := pString(c.params, 0)
		if err != nil {
			return nil, err
		}
		return f(d.e, gid)
	}
}

func okAction(f func(*Engine) error) method {
	return func(_ context.Context, d *Daemon, _ *call) (any, error) {
		if err := f(d.e); err != nil {
			return nil, err
		}
		return "OK", nil
	}
}

// gidQuery answers from one task, under the engine's lock.
func gidQuery(f func(*Engine, *task) (any, error)) method {
	return func(_ context.Context, d *Daemon, c *call) (any, error) {
		gid, err := pString(c.params, 0)
		if err != nil {
			return nil, err
		}
		e := d.e
		e.mu.Lock()
		defer e.mu.Unlock()
		t, err := e.lookup(gid)
		if err != nil {
			return nil, err
		}
		return f(e, t)
	}
}

// getUris answers for a task that has not ended (aria2 keeps no URIs in
// a result).
func getUris(e *Engine, t *task) (any, error) {
	if isStopped(t.Status) {
		return nil, rpcErrorf("No URI data is available for GID#%s", t.GID)
	}
	return uris(t), nil
}

func getServers(e *Engine, t *task) (any, error) {
	if t.Status != statusActive || t.dl == nil {
		return nil, rpcErrorf("No active download for GID#%s", t.GID)
	}
	return servers(t), nil
}

func mNoTorrent(context.Context, *Daemon, *call) (any, error) {
	return nil, errors.New("BitTorrent is not supported: dlflow downloads HTTP and HTTPS URLs (addUri) and Metalinks (addMetalink)")
}

func mRemoveResult(_ context.Context, d *Daemon, c *call) (any, error) {
	gid, err := pString(c.params, 0)
	if err != nil {
		return nil, err
	}
	if err := d.e.removeResult(gid); err != nil {
		return nil, err
	}
	return "OK", nil
}

func mChangePosition(_ context.Context, d *Daemon, c *call) (any, error) {
	gid, err := pString(c.params, 0)
	if err != nil {
		return nil, err
	}
	pos, ok, err := pInt(c.params, 1)
	if err != nil || !ok {
		return nil, paramErr(1)
	}
	how, err := pString(c.params, 2)
	if err != nil {
		return nil, err
	}
	return d.e.changePosition(gid, pos, how)
}

func mTellStatus(_ context.Context, d *Daemon, c *call) (any, error) {
	gid, err := pString(c.params, 0)
	if err != nil {
		return nil, err
	}
	keys, err := pStrings(c.params, 1)
	if err != nil {
		return nil, err
	}
	e := d.e
	e.mu.Lock()
	defer e.mu.Unlock()
	t, err := e.lookup(gid)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(appendObject(nil, e.status(t, keys))), nil
}

func mTellActive(_ context.Context, d *Daemon, c *call) (any, error) {
	keys, err := pStrings(c.params, 0)
	if err != nil {
		return nil, err
	}
	e := d.e
	e.mu.Lock()
	defer e.mu.Unlock()
	return statusList(e, e.active, keys, false), nil
}

func mTellWaiting(_ context.Context, d *Daemon, c *call) (any, error) {
	return d.page(c, func(e *Engine) []*task { return e.waiting })
}

func mTellStopped(_ context.Context, d *Daemon, c *call) (any, error) {
	return d.page(c, func(e *Engine) []*task { return e.stopped })
}

// page answers tellWaiting and tellStopped: offset, num, keys, as aria2
// (a negative offset counts from the end, and lists backwards).
func (d *Daemon) page(c *call, list func(*Engine) []*task) (any, error) {
	offset, ok, err := pInt(c.params, 0)
	if err != nil || !ok {
		return nil, paramErr(0)
	}
	num, ok, err := pInt(c.params, 1)
	if err != nil || !ok {
		return nil, paramErr(1)
	}
	if num < 0 {
		return nil, errors.New("num must be greater than or equal to 0")
	}
	keys, err := pStrings(c.params, 2)
	if err != nil {
		return nil, err
	}
	e := d.e
	e.mu.Lock()
	defer e.mu.Unlock()
	items := list(e)
	lo, hi, reverse := pageRange(offset, num, len(items))
	return statusList(e, items[lo:hi], keys, reverse), nil
}

// statusList encodes the status of tasks as a JSON list (backwards when
// reverse). Called with e.mu held.
func statusList(e *Engine, tasks []*task, keys []string, reverse bool) json.RawMessage {
	b := make([]byte, 0, 64+len(tasks)*1024)
	b = append(b, '[')
	for i := range tasks {
		t := tasks[i]
		if reverse {
			t = tasks[len(tasks)-1-i]
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = appendObject(b, e.status(t, keys))
	}
	return append(b, ']')
}

// pageRange is aria2's getPaginationRange.
func pageRange(offset, num, size int) (lo, hi int, reverse bool) {
	if offset < 0 {
		last := offset + size
		if last < 0 {
			return 0, 0, true
		}
		lo = max(last-(num-1), 0)
		return lo, min(last+1, size), true
	}
	if offset >= size {
		return 0, 0, false
	}
	return offset, min(offset+num, size), false
}

func mGetVersion(context.Context, *Daemon, *call) (any, error) {
	return map[string]any{"version": ariaVersion, "enabledFeatures": []string{"Async DNS", "GZip", "HTTPS", "Message Digest", "Metalink"}}, nil
}

// ariaVersion is the aria2 version whose RPC the daemon answers as.
const ariaVersion = "1.37.0"

// mShutdown stops the daemon a second after answering, as aria2 does
// (it waits 3 s), so that the answer gets out: the downloads stop and stay
// active in the session, to resume at the next start.
func mShutdown(_ context.Context, d *Daemon, _ *call) (any, error) {
	stop := d.stop.Load()
	if stop == nil {
		return nil, errors.New("the daemon is not serving")
	}
	time.AfterFunc(time.Second, *stop)
	return "OK", nil
}

func mSaveSession(context.Context, *Daemon, *call) (any, error) {
	// Every change is committed before it is answered: the session is
	// always saved.
	return "OK", nil
}
