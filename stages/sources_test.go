package stages

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/pipeline"
)

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
