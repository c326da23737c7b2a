package stages

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/pipeline"
)

// TestSchedulerSplitsBySourceSpeed: with several sources, an idle replica
// splits a slower source's span where both end together, not in the
// middle; with one source, in the middle as before.
func TestSchedulerSplitsBySourceSpeed(t *testing.T) {
	for _, tt := range []struct {
		multi bool
		want  int64
	}{{false, 32 << 20}, {true, 16 << 20}} {
		t.Run(fmt.Sprint("multi=", tt.multi), func(t *testing.T) {
			s := newScheduler(1 << 20)
			s.multi = tt.multi
			victim := s.begin(0, 64<<20, 1)
			s.answered(victim, 0)
			// Source 1 goes at 4 MiB/s per connection, source 0 at 12.
			s.sample(1, 4<<20, time.Second)
			s.sample(0, 12<<20, time.Second)
			s.mu.Lock()
			victim.started = time.Now().Add(-time.Second)
			s.mu.Unlock()
			victim.read.Store(4 << 20)
			thief, how := s.steal(0)
			if thief == nil || how != stealHalve {
				t.Fatalf("steal = %v, %d", thief, how)
			}
			start, end, _ := s.next(thief)
			if start != tt.want || end != 64<<20 || thief.src != 0 {
				t.Fatalf("thief took [%d,%d) from source %d, want [%d,%d) from 0", start, end, thief.src, tt.want, 64<<20)
			}
			if _, vend, _ := s.next(victim); vend != tt.want {
				t.Fatalf("victim ends at %d, want %d", vend, tt.want)
			}
		})
	}
}

// TestSchedulerAdoptsOrphans: a span whose reader's source was dropped,
// and a range taken but not fetched, stay registered (busy) until an idle
// replica adopts them, before any halving.
func TestSchedulerAdoptsOrphans(t *testing.T) {
	s := newScheduler(1 << 20)
	s.multi = true
	r := s.begin(8<<20, 16<<20, 1)
	s.claim(r, 8<<20, 1<<20)
	_, changed := s.busy()
	s.orphan(r)
	select {
	case <-changed:
	default:
		t.Fatal("orphan did not wake the idle replicas")
	}
	s.orphanRange(32<<20, 36<<20)
	got := map[[2]int64]bool{}
	for range 2 {
		if busy, _ := s.busy(); !busy {
			t.Fatal("orphans do not keep the scheduler busy")
		}
		a, how := s.steal(0)
		if a == nil || how != stealAdopt || a.src != 0 {
			t.Fatalf("steal = %v, %d", a, how)
		}
		start, end, ok := s.next(a)
		if !ok {
			t.Fatal("adopted span has nothing left")
		}
		got[[2]int64{start, end}] = true
		s.claim(a, start, int(end-start))
		s.leave(a)
	}
	if !got[[2]int64{9 << 20, 16 << 20}] || !got[[2]int64{32 << 20, 36 << 20}] {
		t.Fatalf("adopted %v", got)
	}
	if busy, _ := s.busy(); busy {
		t.Fatal("still busy after the orphans completed")
	}
	if st := s.stats(); st.Adopted != 2 {
		t.Fatalf("stats %+v, want 2 adopted", st)
	}
}

// TestSourcesDropAndCap: replicas are dealt round the sources within the
// per-source cap; transient failures drop a source after sourceFailLimit
// in a row, a mismatch at once, and the last live source never.
func TestSourcesDropAndCap(t *testing.T) {
	res := &pipeline.Resource{URL: "http://a.test/f", Size: 100, ETag: `"e"`,
		Mirrors: []string{"http://user:secret@b.test/f", "http://c.test/f"},
		HTTP:    httpx.Requester{Header: http.Header{"Authorization": {"Basic x"}, "User-Agent": {"t"}}}}
	s := newSources(res, 6, zerolog.Nop())
	if s.perSource != 2 {
		t.Fatalf("perSource %d, want 2", s.perSource)
	}
	var got []int
	for i := range 7 {
		if src := s.assign(i); src != nil {
			got = append(got, src.idx)
		} else {
			got = append(got, -1)
		}
	}
	if fmt.Sprint(got) != "[0 1 2 0 1 2 -1]" {
		t.Fatalf("assigned %v", got)
	}
	b, c := s.list[1], s.list[2]
	if strings.Contains(b.name, "secret") {
		t.Fatalf("name %q not redacted", b.name)
	}
	refused := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	for i := range sourceFailLimit - 1 {
		if s.failed(b, refused) {
			t.Fatalf("dropped after %d failures", i+1)
		}
	}
	s.succeeded(b) // a success in between: the count starts over
	for range sourceFailLimit - 1 {
		s.failed(b, refused)
	}
	if s.isDropped(b) {
		t.Fatal("dropped though the failures were not in a row")
	}
	if !s.failed(b, refused) || !s.isDropped(b) {
		t.Fatal("not dropped after failures in a row")
	}
	select {
	case <-b.gone:
	default:
		t.Fatal("gone not closed")
	}
	// Its connection moves nowhere: the others are full.
	if next := s.move(b, true); next != nil {
		t.Fatalf("moved to %d past the cap", next.idx)
	}
	if next := s.move(b, false); next == nil || next.idx == 1 {
		t.Fatalf("uncapped move to %v", next)
	}
	mm := &SourceMismatchError{URL: c.name, Reason: "its size 1 differs"}
	if !s.failed(c, mm) {
		t.Fatal("a mismatch did not drop the mirror at once")
	}
	// The primary is the last one: never dropped.
	for range 2 * sourceFailLimit {
		if s.failed(s.list[0], refused) {
			t.Fatal("the last live source was dropped")
		}
	}
	if httpx.IsTransient(mm) || errors.Is(mm, httpx.ErrResourceChanged) {
		t.Fatal("a mismatch must be permanent and not a changed file")
	}
	st := s.stats()
	if st[1].Errors != 2*sourceFailLimit-1 || st[1].Dropped == "" || st[2].Dropped != mm.Error() || st[0].Dropped != "" {
		t.Fatalf("stats %+v", st)
	}
}

// TestSourcesValidators: an unguarded mirror must carry the primary's
// validators; a guarded one its own, the same on every answer.
func TestSourcesValidators(t *testing.T) {
	answer := func(etag, lm string) *http.Response {
		return &http.Response{Header: http.Header{"Etag": {etag}, "Last-Modified": {lm}}}
	}
	res := &pipeline.Resource{URL: "http://a.test/f", Size: 100, ETag: `"e"`, LastModified: "Mon, 01 Jan 2024 00:00:00 GMT",
		Mirrors: []string{"http://b.test/f"}}
	s := newSources(res, 2, zerolog.Nop())
	b := s.list[1]
	if got := s.ifRange(b); got != `"e"` {
		t.Fatalf("unguarded first If-Range %q, want the primary's", got)
	}
	var mm *SourceMismatchError
	if err := s.checkAnswer(b, answer(`"x"`, res.LastModified)); !errors.As(err, &mm) || !strings.Contains(mm.Reason, `ETag "x" differs`) {
		t.Fatalf("other ETag unguarded: %v", err)
	}
	if err := s.checkAnswer(b, answer(`"e"`, res.LastModified)); err != nil {
		t.Fatal(err)
	}

	res.Guarded = true
	s = newSources(res, 2, zerolog.Nop())
	b = s.list[1]
	if got := s.ifRange(b); got != "" {
		t.Fatalf("guarded first If-Range %q, want none", got)
	}
	if err := s.checkAnswer(b, answer(`"x"`, "")); err != nil {
		t.Fatalf("other ETag guarded: %v", err)
	}
	if got := s.ifRange(b); got != `"x"` {
		t.Fatalf("If-Range %q after the first answer, want its own", got)
	}
	if err := s.checkAnswer(b, answer(`"y"`, "")); !errors.As(err, &mm) || !strings.Contains(mm.Reason, "changed during the download") {
		t.Fatalf("changed ETag: %v", err)
	}
}

// TestSchedulerShareOf: with several sources a replica asks for one range
// until its source is measured, then for its source's part of a full
// request, by speed; with one source always the full request.
func TestSchedulerShareOf(t *testing.T) {
	s := newScheduler(1 << 20)
	if got := s.shareOf(0); got != 1 {
		t.Fatalf("one source: %v, want 1", got)
	}
	s.multi = true
	if a, b := s.shareOf(0), s.shareOf(1); a != 1 || b != 0 {
		t.Fatalf("unmeasured primary %v, mirror %v; want 1 and 0", a, b)
	}
	s.sample(0, 10<<20, time.Second)
	s.sample(1, 4<<20, time.Second)
	if a, b := s.shareOf(0), s.shareOf(1); a != 1 || b != 0.4 {
		t.Fatalf("shares %v %v, want 1 0.4", a, b)
	}
	tk := newRangeTaker(8 << 20)
	in := make(chan pipeline.Range, 8)
	for i := range int64(8) {
		in <- pipeline.Range{Start: i << 20, End: (i + 1) << 20}
	}
	// 0.4 of 8 MiB: ranges are added while the request is shorter.
	if r, _, _ := tk.try(t.Context(), in, s.shareOf(1)); r != (pipeline.Range{Start: 0, End: 4 << 20}) {
		t.Fatalf("took %v, want [0, 4MiB)", r)
	}
	if r, _, _ := tk.try(t.Context(), in, 0); r != (pipeline.Range{Start: 4 << 20, End: 5 << 20}) {
		t.Fatalf("took %v, want one range", r)
	}
}

// TestSchedulerTooSlow: a source measured slowFactor times slower than
// another takes no work while others are busy and steals none; once the
// fast source is dropped (forget), it works again.
func TestSchedulerTooSlow(t *testing.T) {
	s := newScheduler(1 << 20)
	s.multi = true
	s.sample(0, 40<<20, time.Second)
	s.sample(1, 8<<20, time.Second) // 5 times slower
	s.sample(2, 20<<20, time.Second)
	if !s.tooSlow(1) || s.tooSlow(0) || s.tooSlow(2) {
		t.Fatalf("tooSlow %v %v %v, want only source 1", s.tooSlow(0), s.tooSlow(1), s.tooSlow(2))
	}
	victim := s.begin(0, 64<<20, 2)
	s.answered(victim, 0)
	if r, how := s.steal(1); r != nil {
		t.Fatalf("a too slow source stole (%d)", how)
	}
	s.orphanRange(100<<20, 104<<20)
	if r, how := s.steal(1); r != nil {
		t.Fatalf("a too slow source adopted an orphan (%d)", how)
	}
	if r := s.adopt(0); r == nil {
		t.Fatal("the fast source did not adopt the orphan")
	} else {
		s.claim(r, 100<<20, 4<<20)
		s.leave(r)
	}
	s.forget(0)
	if s.tooSlow(1) {
		t.Fatal("still too slow once the fast source is forgotten")
	}
	if r, how := s.steal(1); r == nil || how != stealHalve {
		t.Fatalf("steal = %v, %d; want a halving", r, how)
	}
}

// TestSchedulerProbesUnmeasuredMirror: until its speed is measured, a
// mirror's replica takes the last 512 KiB of the longest span (not a
// half), cuts a range it took to 512 KiB and adopts 512 KiB of an orphan,
// leaving the rest to others; once measured, it takes whole ranges.
func TestSchedulerProbesUnmeasuredMirror(t *testing.T) {
	const probe = 512 << 10
	s := newScheduler(1 << 20)
	s.multi = true
	if s.probing(0) || !s.probing(1) {
		t.Fatalf("probing primary %v, mirror %v; want false, true", s.probing(0), s.probing(1))
	}
	victim := s.begin(0, 32<<20, 0)
	s.answered(victim, 50*time.Millisecond)
	r, how := s.steal(1)
	if r == nil || how != stealHalve {
		t.Fatalf("steal = %v, %d; want the tail probed", r, how)
	}
	if start, end, _ := s.next(r); start != 32<<20-probe || end != 32<<20 {
		t.Fatalf("the mirror took [%d,%d), want the last 512 KiB", start, end)
	}
	if _, end, _ := s.next(victim); end != 32<<20-probe {
		t.Fatalf("the primary's span ends at %d, want %d", end, 32<<20-probe)
	}
	if end := s.probeRange(1, 40<<20, 44<<20); end != 40<<20+probe {
		t.Fatalf("a taken range is cut at %d, want %d", end, 40<<20+probe)
	}
	a := s.adopt(1)
	if a == nil {
		t.Fatal("the rest of the cut range is not an orphan")
	}
	if start, end, _ := s.next(a); start != 40<<20+probe || end != 41<<20 {
		t.Fatalf("the mirror adopted [%d,%d), want 512 KiB", start, end)
	}
	rest := s.adopt(0)
	if rest == nil {
		t.Fatal("the rest of the orphan is gone")
	}
	if start, end, _ := s.next(rest); start != 41<<20 || end != 44<<20 {
		t.Fatalf("the primary adopted [%d,%d), want [41MiB,44MiB)", start, end)
	}
	s.sample(1, 4<<20, time.Second)
	if s.probing(1) || s.probeRange(1, 48<<20, 52<<20) != 52<<20 {
		t.Fatal("a measured mirror still probes")
	}
}
