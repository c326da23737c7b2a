package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// hostileName is a file name an origin may send: the page must show it as
// text, never run it.
const hostileName = `<img src=x onerror="window.__xss=1">"'&.bin`

// browser is one headless Chromium tab on the page, with the page's
// uncaught exceptions and console errors collected.
type browser struct {
	t      *testing.T
	ctx    context.Context
	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T, ctx context.Context) *browser {
	bin := need(t, "chromium", "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // root in CI and containers
		chromedp.Flag("disable-gpu", true))
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	b := &browser{t: t, ctx: bctx}
	b.listen()
	return b
}

// tab opens another tab of the same browser (a sessionStorage of its own).
func (b *browser) tab() *browser {
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	n := &browser{t: b.t, ctx: ctx}
	n.listen()
	return n
}

func (b *browser) listen() {
	if err := chromedp.Listen(b.ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = "exception: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError && !strings.HasSuffix(ev.Entry.URL, "/favicon.ico") {
				msg = "log: " + ev.Entry.Text
			}
		}
		if msg != "" {
			b.mu.Lock()
			b.errors = append(b.errors, msg)
			b.mu.Unlock()
		}
	}); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) open(url string) {
	b.t.Helper()
	if _, err := chromedp.Call(b.ctx, log.Enable, cdp.Empty{}); err != nil {
		b.t.Fatalf("log.Enable: %v", err)
	}
	if err := chromedp.Do(b.ctx, chromedp.Navigate(url)); err != nil {
		b.t.Fatalf("navigate: %v", err)
	}
}

// eval runs expr in the page (DevTools evaluation, outside the page's
// CSP) and decodes its value into out.
func (b *browser) eval(expr string, out any) {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[json.RawMessage](expr))
	if err != nil {
		b.t.Fatalf("eval %s: %v", expr, err)
	}
	if out != nil {
		if err := json.Unmarshal(v, out); err != nil {
			b.t.Fatalf("eval %s: %s: %v", expr, v, err)
		}
	}
}

// waitFor evaluates cond every 100 ms until it is true, for at most d.
// (chromedp.Poll builds its predicate with new Function, which the page's
// CSP rightly refuses.)
func (b *browser) waitFor(what, cond string, d time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(d)
	for i := 0; ; i++ {
		var ok bool
		b.eval("!!("+cond+")", &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) || i > int(d/(50*time.Millisecond)) {
			var page string
			b.eval(`document.body.innerText`, &page)
			b.t.Fatalf("waiting for %s (%s): not in %v; errors %q; page:\n%s", what, cond, d, b.errs(), page)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *browser) errs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// row is the page's row of the task whose name ends with name (the file's
// name once known, its URL before).
func row(name string) string {
	q, _ := json.Marshal(name)
	return fmt.Sprintf(`[...document.querySelectorAll('#tasks li.task')].find(li => li.querySelector('.name').textContent.endsWith(%s))`, q)
}

func (b *browser) status(name, status string, d time.Duration) {
	b.t.Helper()
	q, _ := json.Marshal(status)
	b.waitFor(name+" "+status, fmt.Sprintf(`(%s || {dataset: {}}).dataset.status === %s`, row(name), q), d)
}

func (b *browser) click(name, button string) {
	b.t.Helper()
	b.eval(fmt.Sprintf(`%s.querySelector('button.%s').click()`, row(name), button), nil)
}

func (b *browser) add(urls ...string) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx,
		chromedp.SetValue(chromedp.ID("uris"), strings.Join(urls, "\n")),
		chromedp.Click(chromedp.ID("add-uris"))); err != nil {
		b.t.Fatalf("add: %v", err)
	}
}

// metalink writes a Metalink 4 document for the origin's path and gives
// it to the page's file input.
func (b *browser) metalink(o *origin, path string) {
	b.t.Helper()
	body := o.files[path]
	doc := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<metalink xmlns="urn:ietf:params:xml:ns:metalink">
  <file name="%s">
    <size>%d</size>
    <hash type="sha-256">%s</hash>
    <url>%s%s</url>
  </file>
</metalink>
`, filepath.Base(path), len(body), sum(body), o.URL, path)
	file := filepath.Join(b.t.TempDir(), "files.meta4")
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		b.t.Fatal(err)
	}
	if err := chromedp.Do(b.ctx, chromedp.SetUploadFiles(chromedp.ID("metalink"), []string{file})); err != nil {
		b.t.Fatalf("upload: %v", err)
	}
}

// encodeFragment escapes s as encodeURIComponent would, for #secret=.
func encodeFragment(s string) string { return url.QueryEscape(s) }

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}
