package web_test

import (
	"context"
	"testing"
	"time"
)

const pageSecret = "page-s3cr3t+/=&x"

// TestPageAgainstAria2: headless Chromium opens the page, served by
// web.Handler in front of a real `aria2c --enable-rpc` (which has no
// dlflow.subscribe, so the page polls), with /#secret=S. Through the page's
// own form it adds two URLs of a loopback origin, one per line, and sees
// both complete; the files' sha256 are the origin's. The second file's
// name, chosen by the origin, is HTML and shows as text. Then it pauses
// and resumes a download held by the origin, removes and clears another,
// and adds a Metalink file. The secret never reaches a cookie or storage.
func TestPageAgainstAria2(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	o := newOrigin(t)
	o.files["/files/data.bin"] = payload(1, 3<<20+17)
	o.files["/files/named"] = payload(2, 100<<10)
	o.names["/files/named"] = hostileName
	o.files["/files/gated.bin"] = payload(3, 1<<20)
	o.gates["/files/gated.bin"] = make(chan struct{})
	o.files["/files/stuck.bin"] = payload(4, 1<<20)
	o.gates["/files/stuck.bin"] = make(chan struct{}) // never opened
	o.files["/files/meta.bin"] = payload(5, 200<<10)

	r := newRig(t, pageSecret)
	b := newBrowser(t, ctx)
	b.open(r.url + "/#secret=" + encodeFragment(pageSecret))
	b.waitFor("polling mode", `document.getElementById('conn').textContent === 'connected (polling)'`, 30*time.Second)

	var kept struct {
		Hash, Cookie   string
		Session, Local int
	}
	b.eval(`({Hash: location.hash, Cookie: document.cookie, Session: sessionStorage.length, Local: localStorage.length})`, &kept)
	if kept.Hash != "" || kept.Cookie != "" || kept.Session != 0 || kept.Local != 0 {
		t.Errorf("secret kept: hash %q, cookie %q, sessionStorage %d, localStorage %d", kept.Hash, kept.Cookie, kept.Session, kept.Local)
	}

	// Two downloads, one per line.
	b.add(o.URL+"/files/data.bin", o.URL+"/files/named")
	b.status("data.bin", "complete", time.Minute)
	b.status(hostileName, "complete", time.Minute)
	var shown struct {
		XSS          bool
		Images       int
		Size, Status string
	}
	b.eval(`({XSS: window.__xss === 1, Images: document.querySelectorAll('#tasks img').length,
		Size: `+row("data.bin")+`.querySelector('.size').textContent,
		Status: `+row("data.bin")+`.querySelector('.status').textContent})`, &shown)
	if shown.XSS || shown.Images != 0 {
		t.Errorf("the origin's file name ran as HTML: __xss %v, %d <img> in the list", shown.XSS, shown.Images)
	}
	if shown.Size != "3.0 MiB / 3.0 MiB (100%)" || shown.Status != "complete" {
		t.Errorf("data.bin row: size %q, status %q", shown.Size, shown.Status)
	}
	for path, name := range map[string]string{"/files/data.bin": "data.bin", "/files/named": hostileName} {
		if got, want := r.fileSum(t, name), sum(o.files[path]); got != want {
			t.Errorf("%s: sha256 %s, want %s", name, got, want)
		}
	}

	pauseResume(t, b, o, r)
	removeClear(t, b, o)

	b.metalink(o, "/files/meta.bin")
	b.status("meta.bin", "complete", time.Minute)
	if got, want := r.fileSum(t, "meta.bin"), sum(o.files["/files/meta.bin"]); got != want {
		t.Errorf("meta.bin: sha256 %s, want %s", got, want)
	}
	if errs := b.errs(); len(errs) > 0 {
		t.Errorf("page errors: %q", errs)
	}
}

// pauseResume: the origin holds gated.bin after its first bytes; the page
// pauses it, the origin lets go, the page resumes it and it completes.
func pauseResume(t *testing.T, b *browser, o *origin, r *rig) {
	b.add(o.URL + "/files/gated.bin")
	waitHeld(t, o, "/files/gated.bin")
	b.status("gated.bin", "active", 30*time.Second)
	b.click("gated.bin", "pause")
	b.status("gated.bin", "paused", 30*time.Second)
	close(o.gates["/files/gated.bin"])
	b.click("gated.bin", "resume")
	b.status("gated.bin", "complete", time.Minute)
	if got, want := r.fileSum(t, "gated.bin"), sum(o.files["/files/gated.bin"]); got != want {
		t.Errorf("gated.bin after pause and resume: sha256 %s, want %s", got, want)
	}
}

// removeClear: a download the origin never finishes is removed, then its
// result cleared, and its row goes.
func removeClear(t *testing.T, b *browser, o *origin) {
	b.add(o.URL + "/files/stuck.bin")
	waitHeld(t, o, "/files/stuck.bin")
	b.status("stuck.bin", "active", 30*time.Second)
	b.click("stuck.bin", "remove")
	b.status("stuck.bin", "removed", 30*time.Second)
	b.click("stuck.bin", "remove") // now labelled Clear
	b.waitFor("stuck.bin's row gone", `!`+row("stuck.bin"), 30*time.Second)
}

func waitHeld(t *testing.T, o *origin, path string) {
	t.Helper()
	select {
	case p := <-o.held:
		if p != path {
			t.Fatalf("origin held %s, want %s", p, path)
		}
	case <-time.After(time.Minute):
		t.Fatalf("origin never held %s", path)
	}
}

// TestPageSecretPrompt: with a wrong secret in the fragment the page asks
// for it; the right one typed in, with "remember" ticked, connects and is
// kept in sessionStorage, never localStorage or a cookie.
func TestPageSecretPrompt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := newRig(t, pageSecret)
	b := newBrowser(t, ctx)
	b.open(r.url + "/#secret=wrong")
	b.waitFor("the secret form", `!document.getElementById('login').hidden &&
		document.getElementById('conn').textContent === 'Unauthorized: wrong secret'`, 30*time.Second)
	var secret string
	b.eval(`document.getElementById('secret').value = `+jsString(pageSecret)+`;
		document.getElementById('remember').checked = true;
		document.querySelector('#login button').click(); ''`, &secret)
	b.waitFor("connected", `document.getElementById('conn').textContent === 'connected (polling)'`, 30*time.Second)
	var kept struct {
		Session, Cookie string
		Local           int
	}
	b.eval(`({Session: sessionStorage.getItem('dlflow.secret'), Cookie: document.cookie, Local: localStorage.length})`, &kept)
	if kept.Session != pageSecret || kept.Cookie != "" || kept.Local != 0 {
		t.Errorf("remembered: sessionStorage %q, cookie %q, localStorage %d", kept.Session, kept.Cookie, kept.Local)
	}
	// A tab of its own has no sessionStorage: it asks again.
	other := b.tab()
	other.open(r.url + "/")
	other.waitFor("the secret form", `!document.getElementById('login').hidden`, 30*time.Second)
}
