package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/robotlauncher/launcher/executor/executortest"
)

// browser starts a headless Chromium (Debian's package) for one test.
func browser(t testing.TB) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		executortest.Skip(t, "the dashboard tests need Debian's chromium (make deps installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 2*executortest.Patience)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("chromium does not start: %v", err)
	}
	return ctx
}

// into runs a and stores its value in dst (chromedp's actions return
// values; Do runs only those that return none).
func into[T any](a chromedp.Action[T], dst *T) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		v, err := a(ctx, t)
		*dst = v
		return chromedp.Void{}, err
	}
}

// artifact saves a test artifact in artifacts/ at the top of the
// repository (kept by CI, ignored by git).
func artifact(t *testing.T, name string, data []byte) string {
	t.Helper()
	dir := filepath.Join("..", "..", "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitJS polls a JavaScript condition in the page.
func waitJS(expr string) chromedp.Action[chromedp.Void] {
	var ok bool
	return into(chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(executortest.Patience), chromedp.WithPollingInterval(50*time.Millisecond)), &ok)
}

func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

func TestDashboardInChromium(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: dash, params: {rate: "100"}}
roscore:
  cmd: echo "hello from roscore"; sleep 300
  ready_check: 'true'
driver:
  cmd: echo driver up at {rate:q}; sleep 300
  depends: [roscore]
  category: drivers
  variants:
    mode:
      - fast: {cmd: "echo mode=fast; {cmd}"}
      - slow: {cmd: "echo mode=slow; {cmd}"}
planner:
  cmd: echo "planning"; sleep 300
  depends: [driver]
arm:
  machine: nobody@127.0.0.1:1
  cmd: sleep 300
`)
	ctx := browser(t)
	s := startServer(t, e, "")
	row := func(p string) string { return fmt.Sprintf(`document.querySelector('#row-%s .state')`, p) }
	stateIs := func(p, st string) string { return row(p) + ` && ` + row(p) + `.textContent === '` + st + `'` }
	var steps, banner, logText string
	var groups int
	err := chromedp.Do(ctx,
		chromedp.Navigate(s.base+"/"),
		// Every process, grouped by session and machine, with its state.
		waitJS(stateIs("roscore", "STOPPED")+" && "+stateIs("arm", "UNAVAILABLE")),
		into(chromedp.Evaluate[int](`document.querySelectorAll('#groups table').length`), &groups),
		// An unreachable machine is a banner.
		waitJS(`document.getElementById('banner').classList.contains('on')`),
		into(chromedp.Text(css("#banner")), &banner),
		// The stream is live before we act.
		waitJS(`document.getElementById('conn').textContent === 'live'`),
		// Start the planner: its dependencies come up, the cells turn
		// READY from the event stream, and the progress shows each step.
		// It starts the driver too, whose variants and param are asked
		// for (the defaults are taken).
		chromedp.Click(css(`#row-planner button[data-action="start"]`)),
		chromedp.WaitVisible(css(`#picker`)),
		waitJS(`document.getElementById('picker-variants').textContent.includes('mode (driver)')`),
		chromedp.Click(css(`#picker-go`)),
		waitJS(stateIs("planner", "READY")+" && "+stateIs("roscore", "READY")),
		// Its age, from the API's age_ms and the time since.
		waitJS(`/^[0-9]+s$/.test(document.querySelector('#row-roscore .age').textContent)`),
		// The request's end comes on the stream after the last ready.
		waitJS(`document.getElementById('steps').textContent.includes('done: start planner')`),
		into(chromedp.Text(css("#steps")), &steps),
	)
	if err != nil {
		t.Fatalf("dashboard: %v\nserver:\n%s", err, s.bg.stderr())
	}
	if groups != 2 || !strings.Contains(banner, "nobody@127.0.0.1:1") {
		t.Errorf("groups %d, banner %q", groups, banner)
	}
	for _, want := range []string{"[planner] ready", "[driver] ready", "done: start planner"} {
		if !strings.Contains(steps, want) {
			t.Errorf("progress lacks %q:\n%s", want, steps)
		}
	}
	if st := e.status(); st["planner"].State != "READY" || st["driver"].State != "READY" {
		t.Errorf("after the page's start: %+v", st)
	}

	// A CLI kill reaches the page through the stream.
	e.mustRun("kill", "planner")
	var shot []byte
	err = chromedp.Do(ctx,
		waitJS(stateIs("planner", "STOPPED")),
		// The log pane follows a process's output.
		chromedp.Click(css(`#row-roscore button[data-action="log"]`)),
		waitJS(`document.querySelector('#log .pane[data-process="roscore"] pre').textContent.includes('hello from roscore')`),
		into(chromedp.Text(css(`#log .pane[data-process="roscore"] pre`)), &logText),
		into(chromedp.FullScreenshot(100), &shot),
	)
	if err != nil {
		t.Fatalf("dashboard after a CLI kill: %v", err)
	}
	t.Logf("screenshot: %s", artifact(t, "dashboard.png", shot))
	if os.Getenv("UPDATE_README_SCREENSHOTS") != "" {
		_ = os.WriteFile(filepath.Join("api", "dashboard", "screenshot.png"), shot, 0o644)
	}

	// Issue 15: more than one log at a time, side by side, each following
	// its own process; closing one leaves the other.
	var panesOpen, panesLeft int
	var driverLog string
	err = chromedp.Do(ctx,
		chromedp.Click(css(`#row-driver button[data-action="log"]`)),
		waitJS(`document.querySelectorAll('#log .pane').length === 2`),
		waitJS(`document.querySelector('#log .pane[data-process="driver"] pre').textContent.includes('driver up at')`),
		into(chromedp.Evaluate[int](`document.querySelectorAll('#log .pane').length`), &panesOpen),
		into(chromedp.Text(css(`#log .pane[data-process="driver"] pre`)), &driverLog),
		into(chromedp.FullScreenshot(100), &shot),
		chromedp.Click(css(`#log .pane[data-process="roscore"] .log-close`)),
		waitJS(`document.querySelectorAll('#log .pane').length === 1`),
		into(chromedp.Evaluate[int](`document.querySelectorAll('#log .pane[data-process="driver"]').length`), &panesLeft),
		chromedp.Click(css(`#log .pane[data-process="driver"] .log-close`)),
		waitJS(`!document.getElementById('log').classList.contains('on')`),
	)
	if err != nil || panesOpen != 2 || panesLeft != 1 || strings.Contains(driverLog, "hello from roscore") {
		t.Fatalf("two log panes: %v (open %d, left %d, driver's: %q)", err, panesOpen, panesLeft, driverLog)
	}
	artifact(t, "dashboard-two-logs.png", shot)

	// Restart the driver with a variant from the picker.
	err = chromedp.Do(ctx,
		chromedp.Click(css(`#row-driver button[data-action="stop"]`)),
		waitJS(stateIs("driver", "STOPPED")),
		chromedp.Click(css(`#row-driver button[data-action="start"]`)),
		chromedp.WaitVisible(css(`#picker`)),
		chromedp.Click(css(`#picker input[value="fast"]`)),
		chromedp.SendKeys(css(`#picker input[data-param="rate"]`), "250 Hz"),
		chromedp.Click(css(`#picker-go`)),
		waitJS(stateIs("driver", "READY")),
	)
	if err != nil {
		t.Fatalf("variant picker: %v", err)
	}
	if log := e.waitLog("dash", "driver", "driver up at 250 Hz"); !strings.Contains(log, "mode=fast") {
		t.Errorf("driver log:\n%s", log)
	}

	// The dependency graph: a node per process.
	var nodes int
	err = chromedp.Do(ctx,
		chromedp.Click(css(`#tab-graph`)),
		waitJS(`document.querySelectorAll('#graph g[data-process]').length === 4`),
		into(chromedp.Evaluate[int](`document.querySelectorAll('#graph path.edge').length`), &nodes),
	)
	if err != nil || nodes != 2 {
		t.Fatalf("graph: %v (%d edges)", err, nodes)
	}

	// On a phone-sized screen each process is one compact line (issue 15:
	// 12 processes made a 2622 px page of cards): no header row, nothing
	// wider than the screen, and a row that says nothing more than its
	// state no taller than a line of buttons.
	var headerHidden bool
	var tallest float64
	var phone []byte
	err = chromedp.Do(ctx,
		chromedp.Click(css(`#tab-table`)),
		chromedp.EmulateViewport(390, 844),
		waitJS(`getComputedStyle(document.querySelector('#groups thead')).display === 'none'`),
		into(chromedp.Evaluate[bool](`document.body.scrollWidth <= 390`), &headerHidden),
		into(chromedp.Evaluate[float64](`Math.max(...[...document.querySelectorAll('#groups tbody tr')]
			.filter(r => !r.querySelector('.err, .tail')).map(r => r.getBoundingClientRect().height))`), &tallest),
		into(chromedp.FullScreenshot(100), &phone),
	)
	if err != nil || !headerHidden {
		t.Errorf("phone layout: %v (fits: %v)", err, headerHidden)
	}
	if tallest <= 0 || tallest > 44 {
		t.Errorf("phone layout: a process's row is %.0f px tall, want one line (≤ 44 px)", tallest)
	}
	artifact(t, "dashboard-phone.png", phone)
	if os.Getenv("UPDATE_README_SCREENSHOTS") != "" {
		_ = os.WriteFile(filepath.Join("api", "dashboard", "screenshot-phone.png"), phone, 0o644)
	}
	if !strings.Contains(logText, "hello from roscore") {
		t.Errorf("log pane: %q", logText)
	}
}

// Issue 15 bug 3: a stop of 200 processes (~800 events) reaches the page
// from the stream: every row reads STOPPED as the API says, and the page
// fetched the list at most a few times (once per burst), not once per
// process (70–210 requests, the page 17 s behind, before). The suite
// stops 60 (a 2-core machine under load starts 200 in minutes); make
// stress, 200.
func TestDashboardKeepsUpWith200(t *testing.T) {
	t.Parallel()
	n := 60
	if os.Getenv("LAUNCHER_STRESS_RUNS") != "" {
		n = 200
	}
	lag, fetches := dashboardLag(t, n)
	t.Logf("the page showed the %d stops %s after the API's answer, with %d request(s)", n, lag.Round(time.Millisecond), fetches)
	if fetches > 10 {
		t.Errorf("the page made %d requests for one burst of events", fetches)
	}
}

// BenchmarkDashboardLag is issue 15's page-lag row (make bench): how long
// after the API answers a stop of 200 the page shows every row STOPPED
// ("page-ms", goal ≤ 500), and with how many requests.
func BenchmarkDashboardLag(b *testing.B) {
	var total time.Duration
	var requests int
	for i := 0; i < b.N; i++ {
		lag, fetches := dashboardLag(b, 200)
		total += lag
		requests += fetches
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "page-ms")
	b.ReportMetric(float64(requests)/float64(b.N), "requests")
}

// dashboardLag starts n processes, opens the dashboard, stops them all
// through the API and returns how long after the API's answer the page
// showed every row STOPPED, and how many requests it made meanwhile; the
// API must agree.
func dashboardLag(t testing.TB, n int) (time.Duration, int) {
	var b strings.Builder
	b.WriteString("context: {session: big}\n")
	var all []string
	for i := range n {
		fmt.Fprintf(&b, "p%03d: {cmd: sleep 300}\n", i)
		all = append(all, fmt.Sprintf("p%03d", i))
	}
	fmt.Fprintf(&b, "all: {cmd: 'true', persistent: false, depends: [%s]}\n", strings.Join(all, ", "))
	e := newEnv(t, b.String())
	e.mustRun("run", "all")
	ctx := browser(t)
	s := startServer(t, e, "")
	count := `[...document.querySelectorAll('[id^="row-p"] .state')].filter((c) => c.textContent === '%s').length`
	var fetches int
	err := chromedp.Do(ctx,
		chromedp.Navigate(s.base+"/"),
		waitJS(fmt.Sprintf(count, "READY")+fmt.Sprintf(" === %d", n)),
		waitJS(`document.getElementById('conn').textContent === 'live'`),
		// Count the page's requests from here on.
		into(chromedp.Evaluate[int](`(() => { window.__fetches = 0; const f = window.fetch; window.fetch = (...a) => { window.__fetches++; return f(...a); }; return 0; })()`), &fetches),
	)
	if err != nil {
		t.Fatalf("dashboard: %v\nserver:\n%s", err, s.bg.stderr())
	}
	var res struct{ OK bool }
	if code := s.do("POST", "/api/v1/stop?wait=done", nil, &res); code != 200 || !res.OK {
		t.Fatalf("stop all: %d %+v", code, res)
	}
	stopped := time.Now()
	err = chromedp.Do(ctx,
		waitJS(fmt.Sprintf(count, "STOPPED")+fmt.Sprintf(" === %d", n)),
		into(chromedp.Evaluate[int](`window.__fetches`), &fetches),
	)
	if err != nil {
		t.Fatalf("the page after the stop: %v", err)
	}
	lag := time.Since(stopped)
	st := e.status()
	for _, n := range all {
		if st[n].State != "STOPPED" {
			t.Errorf("%s: the API says %s", n, st[n].State)
		}
	}
	return lag, fetches
}

// Issue 15, the operator's view: a failed process says why on its row
// (exit code with the signal's name, the last lines of its log), and the
// buttons match the state (no Start on READY, no Stop on DEAD).
func TestDashboardRowSaysWhy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: why}
ok: {cmd: sleep 300}
child: {cmd: sleep 300, depends: [ok]}
slam: {cmd: 'echo "Segmentation fault in map_merge()"; kill -SEGV $$', ready_check: 'false'}
`)
	e.mustRun("run", "child")
	e.run("run", "slam")
	e.waitState("slam", "DEAD")
	ctx := browser(t)
	s := startServer(t, e, "")
	disabled := func(p, a string) string {
		return fmt.Sprintf(`document.querySelector('#row-%s button[data-action="%s"]').disabled`, p, a)
	}
	var exit, why, age, mem, load string
	var shot []byte
	var startOK, stopOK, startSlam, stopSlam bool
	err := chromedp.Do(ctx,
		chromedp.Navigate(s.base+"/"),
		waitJS(`document.querySelector('#row-slam .tail') && document.querySelector('#row-slam .tail').textContent.includes('map_merge')`),
		into(chromedp.Text(css("#row-slam .exit")), &exit),
		into(chromedp.Text(css("#row-slam .tail")), &why),
		into(chromedp.Evaluate[bool](disabled("ok", "start")), &startOK),
		into(chromedp.Evaluate[bool](disabled("ok", "stop")), &stopOK),
		into(chromedp.Evaluate[bool](disabled("slam", "start")), &startSlam),
		into(chromedp.Evaluate[bool](disabled("slam", "stop")), &stopSlam),
		// process-compose's columns: age, CPU and memory of what runs.
		waitJS(`document.querySelector('#row-ok .mem').textContent.endsWith(' MB')`),
		into(chromedp.Text(css("#row-ok .age")), &age),
		into(chromedp.Text(css("#row-ok .mem")), &mem),
		// and the machine's load beside its group.
		waitJS(`document.querySelector('#groups .load').textContent.startsWith('load ')`),
		into(chromedp.Text(css("#groups .load")), &load),
		into(chromedp.FullScreenshot(100), &shot),
	)
	if err != nil {
		t.Fatalf("dashboard: %v\nserver:\n%s", err, s.bg.stderr())
	}
	artifact(t, "dashboard-failure.png", shot)
	if os.Getenv("UPDATE_README_SCREENSHOTS") != "" {
		_ = os.WriteFile(filepath.Join("api", "dashboard", "screenshot-failure.png"), shot, 0o644)
	}
	if exit != "139 (SIGSEGV)" || !strings.Contains(why, "Segmentation fault in map_merge()") || strings.Contains(why, "[launcher]") {
		t.Errorf("slam's row: exit %q, why %q", exit, why)
	}
	if !regexp.MustCompile(`^\d+(s|m\d+s)$`).MatchString(age) || !regexp.MustCompile(`^\d+\.\d MB$`).MatchString(mem) {
		t.Errorf("ok's age %q, memory %q", age, mem)
	}
	if !regexp.MustCompile(`^load \d+\.\d\d \d+\.\d\d \d+\.\d\d · \d+ CPUs$`).MatchString(load) {
		t.Errorf("the machine's load: %q", load)
	}
	if !startOK || stopOK || startSlam || !stopSlam {
		t.Errorf("buttons: ok start disabled %v, stop disabled %v; slam start disabled %v, stop disabled %v", startOK, stopOK, startSlam, stopSlam)
	}

	// A stop that also stops dependants says which and asks once: Cancel
	// changes nothing, the confirmation stops both.
	var ask string
	err = chromedp.Do(ctx,
		chromedp.Click(css(`#row-ok button[data-action="stop"]`)),
		chromedp.WaitVisible(css(`#confirm`)),
		into(chromedp.Text(css("#confirm-text")), &ask),
		chromedp.Click(css(`#confirm-cancel`)),
		chromedp.WaitNotVisible(css(`#confirm`)),
	)
	if err != nil {
		t.Fatalf("stop with dependants: %v", err)
	}
	if !strings.Contains(ask, "also stops what depends on it: child") {
		t.Errorf("the question: %q", ask)
	}
	if st := e.status(); st["ok"].State != "READY" || st["child"].State != "READY" {
		t.Errorf("Cancel stopped something: %+v", st)
	}
	err = chromedp.Do(ctx,
		chromedp.Click(css(`#row-ok button[data-action="stop"]`)),
		chromedp.WaitVisible(css(`#confirm`)),
		chromedp.Click(css(`#confirm-go`)),
		waitJS(`document.querySelector('#row-ok .state').textContent === 'STOPPED' && document.querySelector('#row-child .state').textContent === 'STOPPED'`),
	)
	if err != nil {
		t.Fatalf("confirmed stop: %v", err)
	}

	// The log pane is docked below the table, never over it, and its
	// height is dragged by its grip.
	var room, height int
	err = chromedp.Do(ctx,
		chromedp.Click(css(`#row-child button[data-action="log"]`)),
		waitJS(`document.getElementById('log').classList.contains('on')`),
		into(chromedp.Evaluate[int](`(() => { const g = document.getElementById('log-grip'); const y = window.innerHeight - 300;
			g.dispatchEvent(new PointerEvent('pointerdown', {clientY: window.innerHeight - 100, bubbles: true}));
			window.dispatchEvent(new PointerEvent('pointermove', {clientY: y}));
			window.dispatchEvent(new PointerEvent('pointerup', {clientY: y}));
			return 0; })()`), &room),
		into(chromedp.Evaluate[int](`document.getElementById('log').offsetHeight`), &height),
		into(chromedp.Evaluate[int](`parseInt(getComputedStyle(document.body).paddingBottom)`), &room),
		chromedp.Click(css(`#log .pane[data-process="child"] .log-close`)),
	)
	if err != nil {
		t.Fatalf("log pane: %v", err)
	}
	if height != 300 || room != height {
		t.Errorf("log pane %d px high (300 dragged), the page's room below the table %d px", height, room)
	}

	// The progress is kept across a reload (the server's kept events), in
	// colours by severity, and its filter too.
	if code := s.do("POST", "/api/v1/processes/slam/start?wait=ready", nil, nil); code == 200 {
		t.Errorf("slam started")
	}
	var shownLines, errLines int
	err = chromedp.Do(ctx,
		chromedp.Reload(),
		waitJS(`document.getElementById('steps').textContent.includes('[child] stopped')`),
		into(chromedp.Evaluate[int](`document.querySelectorAll('#steps li.sev-error').length`), &errLines),
		chromedp.SendKeys(css(`#steps-filter`), "[child]"),
		chromedp.Reload(),
		waitJS(`document.getElementById('steps-filter').value === '[child]' && document.getElementById('steps').children.length > 0`),
		into(chromedp.Evaluate[int](`[...document.querySelectorAll('#steps li')].filter((l) => !l.hidden && !l.textContent.includes('[child]')).length`), &shownLines),
	)
	if err != nil {
		t.Fatalf("progress after a reload: %v", err)
	}
	if shownLines != 0 {
		t.Errorf("the filter [child] shows %d other lines", shownLines)
	}
	if errLines == 0 {
		t.Errorf("slam's failed start is not shown as an error after the reload")
	}
}

// TestDashboardGraphReads: the graph reads at 13 and at 200 processes
// (issue 15): a band per machine, an arrowhead on every edge, no label
// wider than its box, no box over another, no edge across a box,
// show_ui: false left out until asked for, and 200 processes wrap into
// columns instead of one 9000 px column.
func TestDashboardGraphReads(t *testing.T) {
	t.Parallel()
	graphOf := func(t *testing.T, config string, want, wantAll int) (height int) {
		e := newEnv(t, config)
		ctx := browser(t)
		s := startServer(t, e, "")
		type check struct {
			Nodes, Edges, Arrows, Bands, Overflow, Overlap, Crossing, Height int
		}
		measure := `(() => {
			const gs = [...document.querySelectorAll('#graph g[data-process]')];
			const rects = gs.map((g) => g.querySelector('rect').getBBox());
			let overflow = 0, overlap = 0;
			gs.forEach((g, i) => { if (g.querySelector('text').getBBox().width > rects[i].width - 8) overflow++; });
			for (let i = 0; i < rects.length; i++) for (let j = i + 1; j < rects.length; j++) {
				const a = rects[i], b = rects[j];
				if (a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height) overlap++;
			}
			const lines = [...document.querySelectorAll('#graph path.edge')];
			// An edge across a box: sample each edge's points.
			let crossing = 0;
			for (const l of lines) {
				const len = l.getTotalLength();
				for (let at = 3; at < len - 3; at += 4) {
					const p = l.getPointAtLength(at);
					if (rects.some((r) => p.x > r.x + 1 && p.x < r.x + r.width - 1 && p.y > r.y + 1 && p.y < r.y + r.height - 1)) { crossing++; break; }
				}
			}
			return { Nodes: gs.length, Edges: lines.length, Arrows: lines.filter((l) => l.getAttribute('marker-end')).length,
				Bands: document.querySelectorAll('#graph text.band').length, Overflow: overflow, Overlap: overlap, Crossing: crossing,
				Height: Math.round(document.querySelector('#graph svg').getBoundingClientRect().height) };
		})()`
		var c, all check
		var shot []byte
		err := chromedp.Do(ctx,
			chromedp.Navigate(s.base+"/"),
			waitJS(`document.getElementById('conn').textContent === 'live' && document.querySelectorAll('[id^="row-"]').length > 0`),
			chromedp.Click(css(`#tab-graph`)),
			waitJS(fmt.Sprintf(`document.querySelectorAll('#graph g[data-process]').length === %d`, want)),
			into(chromedp.Evaluate[check](measure), &c),
			into(chromedp.FullScreenshot(100), &shot),
			chromedp.Click(css(`#graph-all`)),
			waitJS(fmt.Sprintf(`document.querySelectorAll('#graph g[data-process]').length === %d`, wantAll)),
			into(chromedp.Evaluate[check](measure), &all),
		)
		if err != nil {
			t.Fatalf("graph: %v", err)
		}
		artifact(t, "graph-"+strconv.Itoa(want)+".png", shot)
		for _, c := range []check{c, all} {
			if c.Overflow != 0 || c.Overlap != 0 || c.Crossing != 0 || c.Arrows != c.Edges {
				t.Errorf("graph: %+v (labels wider than their box, boxes over others, edges across boxes, edges without an arrowhead)", c)
			}
		}
		if c.Bands != 2 {
			t.Errorf("graph: %d machine bands, want 2", c.Bands)
		}
		return c.Height
	}
	t.Run("13", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("context: {session: g13}\n")
		b.WriteString("roscore: {cmd: sleep 300}\n")
		b.WriteString("a_rather_long_process_name_for_a_driver_node: {cmd: sleep 300, depends: [roscore]}\n")
		for i := 0; i < 8; i++ {
			fmt.Fprintf(&b, "node%d: {cmd: sleep 300, depends: [roscore]}\n", i)
		}
		b.WriteString("helper: {cmd: sleep 300, show_ui: false, depends: [roscore]}\n")
		b.WriteString("arm: {cmd: sleep 300, machine: nobody@127.0.0.1:1}\n")
		b.WriteString("gripper: {cmd: sleep 300, machine: nobody@127.0.0.1:1, depends: [arm]}\n")
		graphOf(t, b.String(), 12, 13)
	})
	t.Run("200", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("context: {session: g200}\nroscore: {cmd: sleep 300}\n")
		for i := 0; i < 197; i++ {
			fmt.Fprintf(&b, "p%03d: {cmd: sleep 300, depends: [roscore]}\n", i)
		}
		b.WriteString("arm: {cmd: sleep 300, machine: nobody@127.0.0.1:1}\n")
		b.WriteString("hidden: {cmd: sleep 300, show_ui: false}\n")
		if h := graphOf(t, b.String(), 199, 200); h > 1400 {
			t.Errorf("the graph of 200 is %d px high: one long column", h)
		}
	})
}

// TestDashboardStartOffersDependencyVariants: Start asks only when there
// is something to choose, and then offers the variants of the dependencies
// the start will start too (issue 15); what is chosen reaches them.
func TestDashboardStartOffersDependencyVariants(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: pick}
base:
  cmd: echo "base up"; sleep 300
  variants:
    mode:
      - fast: {cmd: "echo mode=fast; {cmd}"}
      - slow: {cmd: "echo mode=slow; {cmd}"}
top: {cmd: sleep 300, depends: [base]}
plain: {cmd: sleep 300}
`)
	ctx := browser(t)
	s := startServer(t, e, "")
	row := func(p string) string { return fmt.Sprintf(`document.querySelector('#row-%s .state')`, p) }
	stateIs := func(p, st string) string { return row(p) + ` && ` + row(p) + `.textContent === '` + st + `'` }
	var legend string
	var dialogForPlain bool
	err := chromedp.Do(ctx,
		chromedp.Navigate(s.base+"/"),
		waitJS(stateIs("plain", "STOPPED")),
		// Nothing to choose: no dialog, it starts.
		chromedp.Click(css(`#row-plain button[data-action="start"]`)),
		into(chromedp.Evaluate[bool](`document.getElementById('picker').open`), &dialogForPlain),
		waitJS(stateIs("plain", "READY")),
		// top has no variants, base (which it starts too) has.
		chromedp.Click(css(`#row-top button[data-action="start"]`)),
		chromedp.WaitVisible(css(`#picker`)),
		into(chromedp.Text(css(`#picker-variants legend`)), &legend),
		chromedp.Click(css(`#picker input[value="slow"]`)),
		chromedp.Click(css(`#picker-go`)),
		waitJS(stateIs("top", "READY")+" && "+stateIs("base", "READY")),
	)
	if err != nil {
		t.Fatalf("start with a dependency's variant: %v", err)
	}
	if dialogForPlain {
		t.Error("a dialog opened for a process with nothing to choose")
	}
	if legend != "mode (base)" {
		t.Errorf("the dialog's variant is labelled %q, want %q", legend, "mode (base)")
	}
	if log := e.waitLog("pick", "base", "mode=slow"); strings.Contains(log, "mode=fast") {
		t.Errorf("base's log:\n%s", log)
	}
}

// A config edited while the robot runs (serve started after the edit, as
// it reads the config once): the changed run's row offers "restart to
// apply", which restarts it with the variants and params it was started
// with; an unchanged row offers nothing.
func TestDashboardRestartToApply(t *testing.T) {
	t.Parallel()
	const before = `
context: {session: apply, params: {n: 1}}
svc:
  cmd: echo "version {n}"; sleep 300
  variants: {fast: {cmd: "{cmd} # fast"}}
calm: {cmd: sleep 300}
`
	e := newEnv(t, before)
	e.mustRun("run", "svc", "-v", "fast", "-p", "n:=2")
	e.mustRun("run", "calm")
	pid := e.pid("svc")
	e.writeConfig(strings.Replace(before, "{cmd} # fast", "echo edited n={n}; {cmd}", 1))
	ctx := browser(t)
	s := startServer(t, e, "")
	var calmOffers bool
	err := chromedp.Do(ctx,
		chromedp.Navigate(s.base+"/"),
		chromedp.WaitVisible(css(`#row-svc button.apply`)),
		into(chromedp.Evaluate[bool](`!!document.querySelector('#row-calm button.apply')`), &calmOffers),
		chromedp.Click(css(`#row-svc button.apply`)),
		// The restart applied the config: the button goes once the run is new.
		waitJS(`!document.querySelector('#row-svc button.apply') && document.querySelector('#row-svc .state').textContent === 'READY'`),
	)
	if err != nil {
		t.Fatalf("restart to apply: %v", err)
	}
	if calmOffers {
		t.Error("an unchanged process offers restart to apply")
	}
	if e.pid("svc") == pid {
		t.Error("svc was not restarted")
	}
	// The run's own variant and param came along: n=2 and the fast variant's edit.
	e.waitLog("apply", "svc", "edited n=2")
}

// serve --allow-exec in the dashboard: a command run on a machine shows its
// output and exit; a custom process is added, started and removed from
// its row. Without the switch, neither is offered.
func TestDashboardAllowExec(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: dax}
base: {cmd: sleep 300}
`)
	ctx := browser(t)
	plain := startServer(t, e, "")
	var offeredWithout bool
	if err := chromedp.Do(ctx,
		chromedp.Navigate(plain.base+"/"),
		waitJS(`!!document.querySelector('#row-base .state')`),
		into(chromedp.Evaluate[bool](`!document.getElementById('powers').hidden`), &offeredWithout),
	); err != nil {
		t.Fatal(err)
	}
	if offeredWithout {
		t.Error("the dashboard offers exec without --allow-exec")
	}

	tokenFile := filepath.Join(e.dir, "token")
	if err := os.WriteFile(tokenFile, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, e, "", "--allow-exec", "--token-file", tokenFile)
	var out string
	err := chromedp.Do(ctx,
		chromedp.Navigate(s.base+"/?token=0123456789abcdef0123"),
		chromedp.WaitVisible(css(`#open-exec`)),
		chromedp.Click(css(`#open-exec`)),
		chromedp.SendKeys(css(`#exec-cmd`), "echo hello-$((2+3)); exit 4"),
		chromedp.Click(css(`#exec-run`)),
		waitJS(`document.getElementById('exec-out').textContent.includes('exit 4')`),
		into(chromedp.Text(css(`#exec-out`)), &out),
		chromedp.Click(css(`#exec button[value="close"]`)),
		chromedp.Click(css(`#open-custom`)),
		chromedp.SendKeys(css(`#custom-name`), "probe"),
		chromedp.SendKeys(css(`#custom-cmd`), "echo probe-up; sleep 300"),
		chromedp.Click(css(`#custom-add`)),
		waitJS(`!!document.querySelector('#row-probe .state') && document.querySelector('#row-probe .state').textContent === 'STOPPED'`),
		// The row may come (by the event stream) before the answer that
		// closes the modal dialog: a click while it is open reaches nothing
		// (CI run 82).
		waitJS(`!document.getElementById('custom').open`),
		chromedp.Click(css(`#row-probe button[data-action="start"]`)),
		waitJS(`document.querySelector('#row-probe .state').textContent === 'READY'`),
		// The server recorded the command on the progress list.
		waitJS(`[...document.querySelectorAll('#steps li')].some((li) => li.textContent.includes('exec on local: exit 4'))`),
		chromedp.Click(css(`#row-probe button[data-action="remove"]`)),
		waitJS(`!document.getElementById('row-probe')`),
	)
	if err != nil {
		var text string
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = chromedp.Do(dctx, into(chromedp.Evaluate[string](`document.body.innerText`), &text))
		cancel()
		t.Fatalf("exec and a custom process in the dashboard: %v\npage:\n%s", err, text)
	}
	if !strings.Contains(out, "hello-5") {
		t.Errorf("the command's output: %q", out)
	}
	e.waitLog("dax", "probe", "probe-up")
	var row map[string]any
	s.token = "0123456789abcdef0123"
	if got := s.do("GET", "/api/v1/processes/probe", nil, &row); got != 404 {
		t.Errorf("probe after Remove: %d %v", got, row)
	}
}
