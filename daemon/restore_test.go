package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestRestoreHonoursAskedStops: a pause or a removal asked of an active
// task, and written, holds after a crash that came before its download
// stopped; an active task without one waits first in the queue.
func TestRestoreHonoursAskedStops(t *testing.T) {
	session := filepath.Join(t.TempDir(), "s.db")
	st, err := openStore(session)
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{}
	var ops []op
	for _, r := range []record{
		{GID: "000000000000000a", URIs: []string{"http://127.0.0.1:9/a"}, Status: statusActive, Started: 1, StopAs: statusPaused},
		{GID: "000000000000000b", URIs: []string{"http://127.0.0.1:9/b"}, Status: statusActive, Started: 2, StopAs: statusRemoved},
		{GID: "000000000000000c", URIs: []string{"http://127.0.0.1:9/c"}, Status: statusActive, Started: 3},
		{GID: "000000000000000d", URIs: []string{"http://127.0.0.1:9/d"}, Status: statusWaiting, Pos: posBase},
	} {
		tk := &task{record: r}
		ops = append(ops, e.taskPut(tk))
		if r.Pos != 0 {
			ops = append(ops, queuePut(tk))
		}
	}
	if err := <-st.commit(ops...); err != nil {
		t.Fatal(err)
	}
	st.close()

	e, err = newEngine(Options{Dir: t.TempDir(), Session: session, Jobs: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	var order, statuses []string
	for _, w := range e.waiting {
		order, statuses = append(order, w.GID), append(statuses, w.Status)
	}
	if want := []string{"000000000000000a", "000000000000000c", "000000000000000d"}; !slices.Equal(order, want) {
		t.Errorf("queue %v, want %v", order, want)
	}
	if want := []string{statusPaused, statusWaiting, statusWaiting}; !slices.Equal(statuses, want) {
		t.Errorf("statuses %v, want %v", statuses, want)
	}
	if b := e.tasks["000000000000000b"]; b == nil || b.Status != statusRemoved || b.ErrCode != codeRemoved {
		t.Errorf("the task whose removal was asked: %+v", b)
	}
}

// TestRestoreCompletedBeforeWritten: a task whose download completed (its
// file in place) just before a crash kept the end from the session is
// complete after the restart, not failed on its own file.
func TestRestoreCompletedBeforeWritten(t *testing.T) {
	dir, session := t.TempDir(), filepath.Join(t.TempDir(), "s.db")
	out := filepath.Join(dir, "done.bin")
	if err := os.WriteFile(out, []byte("the bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := openStore(session)
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{}
	tk := &task{record: record{GID: "00000000000000aa", URIs: []string{"http://127.0.0.1:9/done.bin"}, Status: statusActive, Started: 1, Path: out, Ever: true}}
	if err := <-st.commit(e.taskPut(tk)); err != nil {
		t.Fatal(err)
	}
	st.close()
	e, err = newEngine(Options{Dir: dir, Session: session, Jobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	deadline := time.Now().Add(10 * time.Second)
	for range 1000 {
		e.mu.Lock()
		s := e.tasks["00000000000000aa"].Status
		e.mu.Unlock()
		if s != statusActive && s != statusWaiting || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if got := e.tasks["00000000000000aa"]; got.Status != statusComplete {
		t.Errorf("after the restart: %s %d %s, want complete", got.Status, got.ErrCode, got.ErrMsg)
	}
	if b, _ := os.ReadFile(out); string(b) != "the bytes" {
		t.Errorf("the output changed: %q", b)
	}
}
