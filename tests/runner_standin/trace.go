package main

// The job trace (the job log GitLab shows), sent as gitlab-runner's network/trace.go and network/gitlab.go do:
// incremental `PATCH /api/v4/jobs/:id/trace` with the job token in JOB-TOKEN, the bytes in the body and
// `Content-Range: <start>-<end>` (end inclusive); GitLab answers 202 with `Range: 0-<size it holds>`, or 416 with the
// same header when the start is not where its copy ends (the runner then resends from there), or 403 when the job
// token is not the job's or the job is no longer running. The final `PUT /api/v4/jobs/:id` carries the state and the
// trace's size and CRC32 (`output.bytesize`, `output.checksum`), so GitLab can tell it holds the whole trace.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"log"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

const traceUpdateInterval = time.Second

type jobTrace struct {
	client  *http.Client
	url     string // the job's base URL: <gitlab>/api/v4/jobs/<id>
	token   string
	jobID   int64
	mu      sync.Mutex
	buf     bytes.Buffer
	sent    int // bytes GitLab acknowledged
	stop    chan struct{}
	stopped chan struct{}
}

func newJobTrace(client *http.Client, gitlabURL string, jobID int64, token string) *jobTrace {
	t := &jobTrace{
		client: client, url: fmt.Sprintf("%s/api/v4/jobs/%d", strings.TrimRight(gitlabURL, "/"), jobID),
		token: token, jobID: jobID, stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	go t.loop()
	return t
}

func (t *jobTrace) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.Write(p)
}

// Printf appends one formatted line (a newline is added when missing) to the trace.
func (t *jobTrace) Printf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if !strings.HasSuffix(line, "\n") {
		line += "\n"
	}
	_, _ = t.Write([]byte(line))
}

func (t *jobTrace) loop() {
	defer close(t.stopped)
	tick := time.NewTicker(traceUpdateInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			t.flush()
		}
	}
}

// flush sends what GitLab does not hold yet; a 416 moves the offset to GitLab's size and sends again.
func (t *jobTrace) flush() {
	for attempt := 0; attempt < 3; attempt++ {
		t.mu.Lock()
		all := append([]byte(nil), t.buf.Bytes()...)
		start := t.sent
		t.mu.Unlock()
		if start >= len(all) {
			return
		}
		chunk := all[start:]
		req, err := http.NewRequest(http.MethodPatch, t.url+"/trace", bytes.NewReader(chunk))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("JOB-TOKEN", t.token)
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", start, start+len(chunk)-1))
		resp, err := t.client.Do(req)
		if err != nil {
			log.Printf("WARNING: Appending trace to coordinator... error job=%d: %v", t.jobID, err)
			return
		}
		resp.Body.Close()
		size, ok := rangeEnd(resp.Header.Get("Range"))
		switch {
		case resp.StatusCode == http.StatusAccepted && ok:
			t.mu.Lock()
			t.sent = size
			t.mu.Unlock()
			return
		case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && ok:
			log.Printf("WARNING: Appending trace to coordinator... range mismatch job=%d sent=%d remote=%d", t.jobID, start, size)
			t.mu.Lock()
			t.sent = min(size, len(all))
			t.mu.Unlock()
		default:
			log.Printf("WARNING: Appending trace to coordinator... failed job=%d code=%d", t.jobID, resp.StatusCode)
			return
		}
	}
}

// rangeEnd parses GitLab's `Range: 0-<size>` answer.
func rangeEnd(header string) (int, bool) {
	_, end, found := strings.Cut(header, "-")
	if !found {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(end))
	return n, err == nil
}

// finish stops the periodic patches, sends the rest of the trace, then the final state with the trace's checksum.
func (t *jobTrace) finish(jobState, reason string, exitCode int) {
	close(t.stop)
	<-t.stopped
	t.flush()
	t.mu.Lock()
	all := t.buf.Bytes()
	output := map[string]any{"checksum": fmt.Sprintf("crc32:%08x", crc32.ChecksumIEEE(all)), "bytesize": len(all)}
	t.mu.Unlock()
	payload := map[string]any{"token": t.token, "state": jobState, "output": output, "exit_code": exitCode}
	if reason != "" {
		payload["failure_reason"] = reason
	}
	body, _ := json.Marshal(payload)
	req, _ := http.NewRequest(http.MethodPut, t.url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		log.Printf("ERROR: Updating job job=%d: %v", t.jobID, err)
		return
	}
	resp.Body.Close()
	log.Printf("Updating job... job=%d state=%s code=%d", t.jobID, jobState, resp.StatusCode)
}
