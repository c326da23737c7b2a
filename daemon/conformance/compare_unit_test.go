package conformance

import (
	"encoding/json"
	"slices"
	"testing"
)

// The golden file is complete: every method of the script answered, every
// check held and every task ended where the script led it. (A script
// change that breaks against aria2c shows here, without aria2c.)
func TestGoldenIsWhole(t *testing.T) {
	g := readGolden(t)
	if g.Aria2c == "" || g.Output.Client != "aria2@4.1.2" {
		t.Errorf("golden made by %q with %q", g.Aria2c, g.Output.Client)
	}
	var methods []string
	for _, s := range g.Output.Steps {
		methods = append(methods, s.Method)
	}
	for _, m := range []string{"getVersion", "getGlobalOption", "changeGlobalOption", "addUri",
		"tellStatus", "tellWaiting", "tellActive", "pause", "unpause", "pauseAll", "unpauseAll",
		"changePosition", "getUris", "getFiles", "getServers", "getOption", "changeOption",
		"getGlobalStat", "remove", "forceRemove", "tellStopped", "removeDownloadResult",
		"purgeDownloadResult", "getSessionInfo", "saveSession", "system.multicall",
		"system.listMethods", "system.listNotifications", "addMetalink", "addTorrent"} {
		if !slices.Contains(methods, m) {
			t.Errorf("no step calls %s", m)
		}
	}
	for name, ok := range g.Output.Checks {
		if !ok {
			t.Errorf("check %q is false against %s", name, g.Aria2c)
		}
	}
	want := map[string]string{"slow": "removed", "small1": "complete", "small2": "complete",
		"missing": "error", "meta": "complete", "forced": "not-found", "badsum": "error", "forced2": "removed"}
	for label, last := range want {
		seq := g.Output.Statuses[label]
		if len(seq) == 0 || seq[len(seq)-1] != last {
			t.Errorf("%s: statuses %v, want the last %q", label, seq, last)
		}
	}
}

// compare finds each kind of difference, one readable line each, and
// lets the allow-listed ones pass.
func TestCompareFindsDifferences(t *testing.T) {
	ref := readGolden(t).Output
	if d := compare(ref, ref); len(d) != 0 {
		t.Fatalf("the golden differs from itself: %v", d)
	}
	got := clone(t, ref)
	ref = clone(t, ref)
	for i := range got.Steps {
		s := &got.Steps[i]
		switch s.Step {
		case "tellStatus active":
			r := s.Result.(map[string]any)
			r["totalLength"] = "number"    // a type changed
			delete(r, "bitfield")          // a key missing
			r["sources"] = []any{"string"} // a key extra
			// bittorrent: aria2 has it (below), dlflow not: allowed.
			ref.Steps[i].Result.(map[string]any)["bittorrent"] = map[string]any{}
		case "getOption":
			r := s.Result.(map[string]any)
			delete(r, "allow-overwrite") // an option issue 21 does not name: allowed
			delete(r, "split")           // one it names
		case "system.listMethods":
			s.Values = slices.DeleteFunc(s.Values, func(v string) bool {
				return v == "aria2.getPeers" || v == "aria2.pause" // allowed, not allowed
			})
		case "wrong token over HTTP":
			s.Error = nil
			s.Result = "string"
		case "tellWaiting":
			slices.Reverse(s.Order)
		}
	}
	got.Statuses["small2"] = []string{"waiting", "active", "complete"}
	got.Notifications["missing"] = []string{"onDownloadStart", "onDownloadStop"}
	got.Checks["gid is 16 lowercase hex digits"] = false

	want := []string{
		`tellStatus active (tellStatus): result.bitfield: missing in dlflow (aria2: string)`,
		`tellStatus active (tellStatus): result.totalLength: aria2 string, dlflow number`,
		`tellStatus active (tellStatus): result.sources: extra in dlflow (list; aria2 has no such key)`,
		`tellWaiting (tellWaiting): task order: aria2 [small2 small1], dlflow [small1 small2]`,
		`getOption (getOption): result.split: missing in dlflow (aria2: string)`,
		`system.listMethods (system.listMethods): aria2.pause: missing in dlflow`,
		`wrong token over HTTP (getVersion): aria2 answers an error {"code":1,"message":"=Unauthorized"}, dlflow a result (string)`,
		`check gid is 16 lowercase hex digits: aria2 true, dlflow false`,
		`statuses small2: aria2 ["waiting","complete"], dlflow ["waiting","active","complete"]`,
		`notifications missing: aria2 ["onDownloadStart","onDownloadError"], dlflow ["onDownloadStart","onDownloadStop"]`,
	}
	d := compare(ref, got)
	for _, w := range want {
		if !slices.Contains(d, w) {
			t.Errorf("missing difference:\n  %s", w)
		}
	}
	if len(d) != len(want) {
		t.Errorf("got %d differences, want %d:\n%s", len(d), len(want), js(d))
	}
}

func clone(t *testing.T, o output) output {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var c output
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}
