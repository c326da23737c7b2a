package daemon

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// rpcError is an error a method answers with (aria2's code 1).
type rpcError struct{ msg string }

func (e *rpcError) Error() string { return e.msg }

func rpcErrorf(format string, a ...any) error { return &rpcError{msg: fmt.Sprintf(format, a...)} }

// errNoGID is a gid no task has.
func errNoGID(gid string) error { return rpcErrorf("GID %s is not found", gid) }

// lookup finds a task by its gid or a unique prefix of it (as aria2).
// Called with e.mu held.
func (e *Engine) lookup(gid string) (*task, error) {
	g := strings.ToLower(gid)
	if len(g) > 16 || g == "" || strings.Trim(g, "0123456789abcdef") != "" {
		return nil, rpcErrorf("Invalid GID %s", gid)
	}
	if t := e.tasks[g]; t != nil {
		return t, nil
	}
	if len(g) == 16 {
		return nil, errNoGID(gid)
	}
	var found *task
	for k, t := range e.tasks {
		if strings.HasPrefix(k, g) {
			if found != nil {
				return nil, rpcErrorf("GID %s is not unique", gid)
			}
			found = t
		}
	}
	if found == nil {
		return nil, errNoGID(gid)
	}
	return found, nil
}

// add queues new tasks at pos (nil: last), paused or waiting, and starts
// what may start. It returns their gids.
func (e *Engine) add(recs []*record, pos *int) ([]string, error) {
	var gids []string
	err := e.apply(func() ([]op, []note, error) {
		var ops []op
		at := len(e.waiting)
		if pos != nil {
			at = min(*pos, len(e.waiting))
		}
		for i, r := range recs {
			t := &task{record: *r}
			t.GID = e.newGID()
			e.tasks[t.GID] = t
			ops = append(ops, e.insertWaiting(t, at+i)...)
			ops = append(ops, e.taskPut(t))
			gids = append(gids, t.GID)
		}
		o, n := e.schedule()
		return append(ops, o...), n, nil
	})
	return gids, err
}

// pause pauses a waiting or active task (an active one once its download
// has stopped, keeping its partial data).
func (e *Engine) pause(gid string) (string, error) {
	var out string
	return out, e.apply(func() ([]op, []note, error) {
		t, err := e.lookup(gid)
		if err != nil {
			return nil, nil, err
		}
		out = t.GID
		switch {
		case t.Status == statusActive && t.dl != nil && (t.StopAs == "" || t.StopAs == stopRestart):
			// A restart under way (new options) stops as a pause instead.
			t.StopAs = statusPaused
			t.dl.Cancel()
			return []op{e.taskPut(t)}, nil, nil
		case t.Status == statusWaiting:
			// As aria2: onDownloadPause is for a download that stopped.
			t.Status = statusPaused
			return []op{e.taskPut(t)}, nil, nil
		}
		return nil, nil, rpcErrorf("GID#%s cannot be paused now", t.GID)
	})
}

// unpause lets a paused task wait for its turn again.
func (e *Engine) unpause(gid string) (string, error) {
	var out string
	return out, e.apply(func() ([]op, []note, error) {
		t, err := e.lookup(gid)
		if err != nil {
			return nil, nil, err
		}
		out = t.GID
		if t.Status != statusPaused {
			return nil, nil, rpcErrorf("GID#%s cannot be unpaused now", t.GID)
		}
		t.Status = statusWaiting
		ops, notes := e.schedule()
		return append([]op{e.taskPut(t)}, ops...), notes, nil
	})
}

// remove ends a task that has not ended; an active one once its download
// stopped (its partial data is kept, for a later resume).
func (e *Engine) remove(gid string) (string, error) {
	var out string
	return out, e.apply(func() ([]op, []note, error) {
		t, err := e.lookup(gid)
		if err != nil {
			return nil, nil, err
		}
		out = t.GID
		switch t.Status {
		case statusActive:
			if t.dl != nil {
				t.StopAs = statusRemoved
				t.dl.Cancel()
			}
			return []op{e.taskPut(t)}, nil, nil
		case statusWaiting, statusPaused:
			// As aria2: a task that never ran or is paused leaves no
			// result, and no notification.
			ops := e.removeWaiting(t)
			delete(e.tasks, t.GID)
			return append(ops, op{bucket: bucketTasks, key: []byte(t.GID)}), nil, nil
		}
		return nil, nil, rpcErrorf("Active Download not found for GID#%s", t.GID)
	})
}

// pauseAll pauses every active and waiting task; unpauseAll lets every
// paused one wait again.
func (e *Engine) pauseAll() error {
	return e.apply(func() ([]op, []note, error) {
		var ops []op
		for _, t := range e.active {
			if t.dl != nil && (t.StopAs == "" || t.StopAs == stopRestart) {
				t.StopAs = statusPaused
				t.dl.Cancel()
				ops = append(ops, e.taskPut(t))
			}
		}
		for _, t := range e.waiting {
			if t.Status == statusWaiting {
				t.Status = statusPaused
				ops = append(ops, e.taskPut(t))
			}
		}
		return ops, nil, nil
	})
}

func (e *Engine) unpauseAll() error {
	return e.apply(func() ([]op, []note, error) {
		var ops []op
		for _, t := range e.waiting {
			if t.Status == statusPaused {
				t.Status = statusWaiting
				ops = append(ops, e.taskPut(t))
			}
		}
		o, n := e.schedule()
		return append(ops, o...), n, nil
	})
}

// changePosition moves a waiting or paused task in the queue, as aria2:
// how is POS_SET, POS_CUR or POS_END; the place is clamped to the queue.
func (e *Engine) changePosition(gid string, pos int, how string) (int, error) {
	var dest int
	return dest, e.apply(func() ([]op, []note, error) {
		t, err := e.lookup(gid)
		if err != nil {
			return nil, nil, err
		}
		cur := slices.Index(e.waiting, t)
		if cur < 0 {
			return nil, nil, rpcErrorf("GID#%s not found in the waiting queue.", t.GID)
		}
		n := len(e.waiting)
		switch how {
		case "POS_SET":
			dest = pos
		case "POS_CUR":
			dest = cur + pos
		case "POS_END":
			dest = n - 1 + pos
		default:
			return nil, nil, errors.New("Illegal argument.")
		}
		dest = max(0, min(dest, n-1))
		ops := e.removeWaiting(t)
		ops = append(ops, e.insertWaiting(t, dest)...)
		ops = append(ops, e.taskPut(t))
		o, notes := e.schedule()
		return append(ops, o...), notes, nil
	})
}

// purge forgets every ended task; removeResult one.
func (e *Engine) purge() error {
	return e.apply(func() ([]op, []note, error) {
		var ops []op
		for len(e.stopped) > 0 {
			ops = append(ops, e.forget(e.stopped[0])...)
		}
		return ops, nil, nil
	})
}

func (e *Engine) removeResult(gid string) error {
	return e.apply(func() ([]op, []note, error) {
		t, err := e.lookup(gid)
		if err != nil || !isStopped(t.Status) {
			return nil, nil, rpcErrorf("Could not remove download result of GID#%s", gid)
		}
		return e.forget(t), nil, nil
	})
}
