package bench

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/dlflow/dlflow/pipeline"
)

// TestTimeline runs a dlflow cell with a trace against the built-in
// origin (each request capped) and checks the timeline of its last run:
// a lane per connection, each request of the origin's count on one,
// times in order, bytes that add up to the file, the writer's busy time;
// its JSON form says the same, and its SVG is well-formed with a lane per
// connection. Without Options.Timeline there is none.
func TestTimeline(t *testing.T) {
	const size, conns = 4<<20 + 5, 4
	o := testOptions(t)
	o.Scenarios, o.Size, o.Rate, o.Runs, o.Timeline = []Scenario{ScenarioCap}, size, 16<<20, 2, true
	o.Topologies, o.Connections = []string{example("ranged.yaml")}, []int{conns}
	res := run(t, o)
	tl := res.Timeline()
	if len(tl.Cells) != 1 {
		t.Fatalf("%d timeline cells, want 1", len(tl.Cells))
	}
	tc := tl.Cells[0]
	if tc.Label != "ranged c=4" || tc.Scenario != ScenarioCap || tc.Bytes != size || tc.Elapsed <= 0 {
		t.Errorf("cell %q of %s, %d bytes in %v", tc.Label, tc.Scenario, tc.Bytes, tc.Elapsed)
	}
	if len(tc.Lanes) != conns {
		t.Fatalf("%d lanes, want %d (a connection each)", len(tc.Lanes), conns)
	}
	var bytes int64
	requests := 0
	for i, l := range tc.Lanes {
		if l.Reader != i || len(l.Requests) == 0 {
			t.Errorf("lane %d: reader %d with %d requests", i, l.Reader, len(l.Requests))
		}
		for k, r := range l.Requests {
			if k > 0 && r.Sent < l.Requests[k-1].Sent || r.Header < r.Sent || r.Ended < r.Header || r.Ended > tc.Elapsed {
				t.Errorf("lane %d request %d: sent %v, header %v, ended %v of %v", i, k, r.Sent, r.Header, r.Ended, tc.Elapsed)
			}
			bytes += r.Bytes
			if !r.Prefetched {
				requests++
			}
		}
	}
	if bytes != size {
		t.Errorf("the requests delivered %d bytes, want %d", bytes, size)
	}
	// The origin counted the probe's request too (and a HEAD, if any).
	if got := res.Cells[0].RunRecords[1].Requests; int64(requests) >= got || int64(requests) < got-2 {
		t.Errorf("%d requests sent in the trace, the origin counted %d", requests, got)
	}
	i := slices.IndexFunc(tc.Busy, func(b pipeline.TraceBusy) bool { return b.Stage == "write" })
	if i < 0 || tc.Busy[i].Total <= 0 || tc.Busy[i].Total > tc.Elapsed || len(tc.Busy[i].Intervals) == 0 {
		t.Fatalf("the write stage's busy time: %+v", tc.Busy)
	}

	data, err := tl.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cells []struct {
			Label string `json:"label"`
			Lanes []struct {
				Requests []struct {
					Bytes int64 `json:"bytes"`
				} `json:"requests"`
			} `json:"lanes"`
		} `json:"cells"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var jsonBytes int64
	for _, l := range doc.Cells[0].Lanes {
		for _, r := range l.Requests {
			jsonBytes += r.Bytes
		}
	}
	if doc.Cells[0].Label != "ranged c=4" || len(doc.Cells[0].Lanes) != conns || jsonBytes != size {
		t.Errorf("JSON: cell %q, %d lanes, %d bytes", doc.Cells[0].Label, len(doc.Cells[0].Lanes), jsonBytes)
	}

	svg, err := tl.SVG()
	if err != nil {
		t.Fatal(err)
	}
	texts := svgTexts(t, svg)
	for i := range conns {
		if n := strings.Count(texts, fmt.Sprintf("|fetch %d|", i)); n != 1 {
			t.Errorf("lane label %q %d times in the SVG", fmt.Sprintf("fetch %d", i), n)
		}
	}
	if strings.Contains(texts, fmt.Sprintf("|fetch %d|", conns)) || !strings.Contains(texts, "|write 0 ") {
		t.Errorf("SVG texts: %s", texts)
	}
	if _, err := tl.PNG(); err != nil {
		t.Fatal(err)
	}

	o = testOptions(t)
	o.Size, o.Topologies, o.Connections = 1<<20, []string{example("ranged.yaml")}, []int{2}
	if tl := run(t, o).Timeline(); len(tl.Cells) != 0 {
		t.Errorf("a timeline without Options.Timeline: %d cells", len(tl.Cells))
	}
}

// svgTexts parses an SVG document and returns its texts, each between |.
func svgTexts(t *testing.T, data []byte) string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(string(data)))
	var b strings.Builder
	b.WriteString("|")
	inText := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			inText = tok.Name.Local == "text"
		case xml.CharData:
			if inText {
				b.Write(tok)
				b.WriteString("|")
			}
		case xml.EndElement:
			inText = false
		}
	}
	return b.String()
}
