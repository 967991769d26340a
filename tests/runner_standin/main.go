// Command gitlab-runner is a stand-in for GitLab Runner's `run` command, for the project's test pods only: the
// real gitlab-runner cannot be built from the package registries reachable where the tests run. It keeps the
// behaviours the operator relies on, as GitLab documents them
// (https://docs.gitlab.com/runner/configuration/advanced-configuration/,
// https://docs.gitlab.com/runner/commands/#signals, https://docs.gitlab.com/api/runners/) and as gitlab-runner's
// source implements them (commands/multi.go, common/config.go, commands/internal/configfile):
//
//   - `run --config PATH --working-directory DIR`; config.toml decoded with BurntSushi/toml; a syntax error is
//     fatal at start and, on a reload, logged with the old config kept;
//   - `.runner_system_id` read once from filepath.Dir(PATH as given), not from the symlink target's directory;
//   - `POST /api/v4/jobs/request` every check_interval with token, system_id and info;
//   - reload when os.Stat(PATH) (following symlinks) shows a later mtime, polled every 3 s, or on SIGHUP;
//   - after 3 forbidden replies a runner is unhealthy and skipped for 1 h unless the config reloads;
//   - /metrics on listen_address, with gitlab_runner_process_state_info;
//   - SIGQUIT: graceful (no new jobs, wait for running ones, exit 0); SIGTERM/SIGINT: forceful (running jobs
//     are aborted and reported failed, exit 1).
//
// Jobs: for a [[runners]] entry with executor "kubernetes", the calls of gitlab-runner's kubernetes executor
// (kubernetes.go; docs/development/runner-standin.md), the trace through `PATCH /api/v4/jobs/:id/trace` (trace.go);
// for any other executor, the script lines run through /bin/sh in the stand-in's own process (a shell executor
// without a trace). Either way the result goes back through `PUT /api/v4/jobs/:id` with the job token.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
)

const (
	version                = "19.4.0"
	reloadConfigInterval   = 3 * time.Second
	unhealthyRequestsLimit = 3
	unhealthyInterval      = time.Hour
	defaultCheckInterval   = 3 * time.Second
)

type RunnerConfig struct {
	Name     string `toml:"name"`
	URL      string `toml:"url"`
	Token    string `toml:"token"`
	Executor string `toml:"executor"`
	Limit    int    `toml:"limit"`

	Kubernetes *KubernetesConfig `toml:"kubernetes"`
}

type Config struct {
	Concurrent    int            `toml:"concurrent"`
	CheckInterval int            `toml:"check_interval"`
	ListenAddress string         `toml:"listen_address"`
	Runners       []RunnerConfig `toml:"runners"`
}

func loadConfig(path string) (*Config, time.Time, error) {
	st, err := os.Stat(path) // follows symlinks, as gitlab-runner does
	if err != nil {
		return nil, time.Time{}, err
	}
	cfg := &Config{}
	if _, err := toml.DecodeFile(path, cfg); err != nil {
		return nil, time.Time{}, err
	}
	return cfg, st.ModTime(), nil
}

var systemIDPattern = regexp.MustCompile(`^[sr]_[0-9a-zA-Z]{12}$`)

// readSystemID reads .runner_system_id beside the --config path as given; unreadable-but-present is fatal.
func readSystemID(configPath string) string {
	path := filepath.Join(filepath.Dir(configPath), ".runner_system_id")
	raw, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(raw))
		if systemIDPattern.MatchString(id) {
			return id
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		log.Fatalf("FATAL: reading system ID from %s: %v", path, err)
	}
	// gitlab-runner derives a new id from /etc/machine-id; the stand-in uses a fixed one and tries to save it.
	id := "s_000000000000"
	if werr := os.WriteFile(path, []byte(id+"\n"), 0o600); werr != nil {
		log.Printf("WARNING: couldn't save new system ID on disk: %v", werr)
	}
	return id
}

type state struct {
	mu          sync.Mutex
	cfg         *Config
	mtime       time.Time
	failures    map[string]int
	unhealthy   map[string]time.Time
	process     string
	jobs        int
	requests    map[string]int // "status" -> count
	failedJobs  map[string]int // failure_reason -> count
	configPath  string
	systemID    string
	reloadCount int
}

func (s *state) reload(force bool) {
	st, err := os.Stat(s.configPath)
	if err != nil {
		log.Printf("ERROR: Failed to load config stat=%v", err)
		return
	}
	s.mu.Lock()
	later := st.ModTime().After(s.mtime)
	s.mu.Unlock()
	if !later && !force {
		return
	}
	cfg, mtime, err := loadConfig(s.configPath)
	if err != nil {
		log.Printf("ERROR: Failed to load config (keeping the old one): %v", err)
		s.mu.Lock()
		s.mtime = st.ModTime() // a broken file is not re-read until it changes again
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	s.cfg, s.mtime = cfg, mtime
	s.failures = map[string]int{}
	s.unhealthy = map[string]time.Time{}
	s.reloadCount++
	s.mu.Unlock()
	log.Printf("Configuration loaded builds=%d", len(cfg.Runners))
}

func short(token string) string {
	if len(token) > 8 {
		return token[:8]
	}
	return token
}

// job holds the fields of GitLab's job payload (POST /jobs/request) the stand-in reads.
type job struct {
	ID      int64  `json:"id"`
	Token   string `json:"token"`
	JobInfo struct {
		Name        string `json:"name"`
		ProjectID   int64  `json:"project_id"`
		ProjectName string `json:"project_name"`
	} `json:"job_info"`
	GitInfo struct {
		RepoURL   string `json:"repo_url"`
		Ref       string `json:"ref"`
		Sha       string `json:"sha"`
		BeforeSha string `json:"before_sha"`
	} `json:"git_info"`
	Image       jobImage        `json:"image"`
	Variables   []jobVariable   `json:"variables"`
	Credentials []jobCredential `json:"credentials"`
	Steps       []struct {
		Script []string `json:"script"`
	} `json:"steps"`
}

// jobURL is CI_JOB_URL when GitLab sent it, else the project URL derived from the repository URL.
func (j *job) jobURL() string {
	for _, v := range j.Variables {
		if v.Key == "CI_JOB_URL" {
			return v.Value
		}
	}
	return strings.TrimSuffix(j.GitInfo.RepoURL, ".git") + fmt.Sprintf("/-/jobs/%d", j.ID)
}

// envVars: the job's variables as the build container's environment (file variables are left out).
func (j *job) envVars() []corev1EnvVar {
	var out []corev1EnvVar
	for _, v := range j.Variables {
		if !v.File && v.Key != "" {
			out = append(out, corev1EnvVar{Name: v.Key, Value: v.Value})
		}
	}
	return out
}

type atomicString struct{ v atomic.Value }

func (a *atomicString) Store(s string) { a.v.Store(s) }
func (a *atomicString) Load() string {
	s, _ := a.v.Load().(string)
	return s
}

func logf(format string, args ...any) { log.Printf(format, args...) }

type runningJob struct {
	cancel context.CancelFunc
	done   chan struct{}
}

type runner struct {
	st      *state
	client  *http.Client
	jobsMu  sync.Mutex
	running map[int64]*runningJob
	wg      sync.WaitGroup
}

func (r *runner) requestJob(ctx context.Context, rc RunnerConfig, sysID string) (*job, int, error) {
	body, _ := json.Marshal(map[string]any{
		"token":     rc.Token,
		"system_id": sysID,
		"info": map[string]any{
			"name": "gitlab-runner", "version": version, "revision": "standin", "platform": "linux",
			"architecture": "amd64", "executor": rc.Executor,
			"features": map[string]bool{"variables": true, "shared": true, "upload_multiple_artifacts": true},
		},
	})
	url := strings.TrimRight(rc.URL, "/") + "/api/v4/jobs/request"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return nil, resp.StatusCode, nil
	}
	j := &job{}
	if err := json.Unmarshal(raw, j); err != nil {
		return nil, resp.StatusCode, err
	}
	return j, resp.StatusCode, nil
}

func (r *runner) updateJob(rc RunnerConfig, j *job, jobState, reason string) {
	payload := map[string]any{"token": j.Token, "state": jobState}
	if reason != "" {
		payload["failure_reason"] = reason
	}
	body, _ := json.Marshal(payload)
	url := fmt.Sprintf("%s/api/v4/jobs/%d", strings.TrimRight(rc.URL, "/"), j.ID)
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		log.Printf("ERROR: Updating job job=%d: %v", j.ID, err)
		return
	}
	resp.Body.Close()
	log.Printf("Updating job... job=%d state=%s code=%d", j.ID, jobState, resp.StatusCode)
}

func (r *runner) runJob(rc RunnerConfig, j *job) {
	ctx, cancel := context.WithCancel(context.Background())
	rj := &runningJob{cancel: cancel, done: make(chan struct{})}
	r.jobsMu.Lock()
	r.running[j.ID] = rj
	r.jobsMu.Unlock()
	r.st.mu.Lock()
	r.st.jobs++
	r.st.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(rj.done)
		defer func() {
			r.jobsMu.Lock()
			delete(r.running, j.ID)
			r.jobsMu.Unlock()
			r.st.mu.Lock()
			r.st.jobs--
			r.st.mu.Unlock()
		}()
		log.Printf("Job started job=%d executor=%s", j.ID, rc.Executor)
		if rc.Executor == "kubernetes" {
			trace := newJobTrace(r.client, rc.URL, j.ID, j.Token)
			jobState, reason, code := runKubernetesJob(ctx, rc, j, r.st.systemID, trace)
			switch {
			case ctx.Err() != nil:
				log.Printf("Job aborted job=%d", j.ID)
				jobState, reason = "failed", "runner_system_failure"
			case jobState == "success":
				log.Printf("Job succeeded job=%d", j.ID)
			default:
				log.Printf("Job failed job=%d reason=%s", j.ID, reason)
			}
			r.st.countFailure(reason)
			trace.finish(jobState, reason, code)
			return
		}
		var lines []string
		for _, step := range j.Steps {
			lines = append(lines, step.Script...)
		}
		cmd := exec.CommandContext(ctx, "/bin/sh", "-ec", strings.Join(lines, "\n"))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		err := cmd.Run()
		switch {
		case ctx.Err() != nil:
			log.Printf("Job aborted job=%d", j.ID)
			r.st.countFailure("runner_system_failure")
			r.updateJob(rc, j, "failed", "runner_system_failure")
		case err != nil:
			log.Printf("Job failed job=%d: %v", j.ID, err)
			r.st.countFailure("script_failure")
			r.updateJob(rc, j, "failed", "script_failure")
		default:
			log.Printf("Job succeeded job=%d", j.ID)
			r.updateJob(rc, j, "success", "")
		}
	}()
}

func (r *runner) abortAll() {
	r.jobsMu.Lock()
	for _, rj := range r.running {
		rj.cancel()
	}
	r.jobsMu.Unlock()
}

// poll is one round over every [[runners]] entry: request a job unless unhealthy or at the limit.
func (r *runner) poll(ctx context.Context) {
	s := r.st
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	for _, rc := range cfg.Runners {
		s.mu.Lock()
		until, bad := s.unhealthy[rc.Token]
		busy := s.jobs
		s.mu.Unlock()
		if bad && time.Now().Before(until) {
			continue
		}
		concurrent := cfg.Concurrent
		if concurrent <= 0 {
			concurrent = 1
		}
		if busy >= concurrent || (rc.Limit > 0 && busy >= rc.Limit) {
			continue
		}
		j, code, err := r.requestJob(ctx, rc, s.systemID)
		s.mu.Lock()
		key := fmt.Sprint(code)
		if err != nil {
			key = "error"
		}
		s.requests[key]++
		switch {
		case err != nil:
			log.Printf("ERROR: Checking for jobs... error runner=%s: %v", short(rc.Token), err)
		case code == http.StatusForbidden:
			s.failures[rc.Token]++
			log.Printf("ERROR: Checking for jobs... forbidden runner=%s status=403", short(rc.Token))
			if s.failures[rc.Token] >= unhealthyRequestsLimit {
				log.Printf("ERROR: Runner %q is unhealthy and will be disabled for %s", short(rc.Token), unhealthyInterval)
				s.unhealthy[rc.Token] = time.Now().Add(unhealthyInterval)
			}
		case code == http.StatusCreated || code == http.StatusNoContent:
			s.failures[rc.Token] = 0
			log.Printf("Checking for jobs... ok runner=%s status=%d", short(rc.Token), code)
		default:
			log.Printf("WARNING: Checking for jobs... failed runner=%s status=%d", short(rc.Token), code)
		}
		s.mu.Unlock()
		if j != nil {
			log.Printf("Checking for jobs... received job=%d runner=%s", j.ID, short(rc.Token))
			r.runJob(rc, j)
		}
	}
}

// countFailure: gitlab_runner_failed_jobs_total by failure_reason, as gitlab-runner's failures collector counts a
// failed job (helpers/prometheus/failures_collector.go); a successful job (reason "") is not counted.
func (s *state) countFailure(reason string) {
	if reason == "" {
		return
	}
	s.mu.Lock()
	s.failedJobs[reason]++
	s.mu.Unlock()
}

func (s *state) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintln(w, "# TYPE gitlab_runner_process_state_info gauge")
	for _, st := range []string{"starting", "running", "graceful-shutdown", "forceful-shutdown"} {
		v := 0
		if st == s.process {
			v = 1
		}
		fmt.Fprintf(w, "gitlab_runner_process_state_info{state=%q} %d\n", st, v)
	}
	fmt.Fprintln(w, "# TYPE gitlab_runner_jobs gauge")
	fmt.Fprintf(w, "gitlab_runner_jobs %d\n", s.jobs)
	fmt.Fprintln(w, "# TYPE gitlab_runner_concurrent gauge")
	fmt.Fprintf(w, "gitlab_runner_concurrent %d\n", s.cfg.Concurrent)
	fmt.Fprintln(w, "# TYPE gitlab_runner_api_request_statuses_total counter")
	for status, n := range s.requests {
		fmt.Fprintf(w, "gitlab_runner_api_request_statuses_total{endpoint=\"request_job\",status=%q} %d\n", status, n)
	}
	fmt.Fprintln(w, "# TYPE gitlab_runner_failed_jobs_total counter")
	for reason, n := range s.failedJobs {
		fmt.Fprintf(w, "gitlab_runner_failed_jobs_total{failure_reason=%q} %d\n", reason, n)
	}
	fmt.Fprintln(w, "# TYPE gitlab_runner_config_reloads_total counter")
	fmt.Fprintf(w, "gitlab_runner_config_reloads_total %d\n", s.reloadCount)
}

func main() {
	log.SetFlags(log.LstdFlags)
	log.SetOutput(os.Stdout)
	if len(os.Args) < 2 || os.Args[1] != "run" {
		if len(os.Args) >= 2 && os.Args[1] == "--version" {
			fmt.Printf("Version:      %s\nGit revision: standin\n", version)
			return
		}
		fmt.Fprintln(os.Stderr, "usage: gitlab-runner run --config PATH --working-directory DIR")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	configPath := fs.String("config", "/etc/gitlab-runner/config.toml", "config file")
	fs.StringVar(configPath, "c", "/etc/gitlab-runner/config.toml", "config file")
	workDir := fs.String("working-directory", "", "working directory")
	fs.StringVar(workDir, "d", "", "working directory")
	_ = fs.Parse(os.Args[2:])

	cfg, mtime, err := loadConfig(*configPath)
	if err != nil {
		log.Fatalf("FATAL: failed to load config: %v", err)
	}
	if *workDir != "" {
		if err := os.Chdir(*workDir); err != nil {
			log.Printf("WARNING: working directory %s: %v", *workDir, err)
		}
	}
	st := &state{
		cfg: cfg, mtime: mtime, configPath: *configPath, process: "starting",
		failures: map[string]int{}, unhealthy: map[string]time.Time{}, requests: map[string]int{},
		failedJobs: map[string]int{},
	}
	st.systemID = readSystemID(*configPath)
	log.Printf("Starting multi-runner from %s... version=%s system_id=%s", *configPath, version, st.systemID)

	if cfg.ListenAddress != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/metrics", st.serveMetrics)
		go func() {
			if err := http.ListenAndServe(cfg.ListenAddress, mux); err != nil {
				log.Printf("ERROR: metrics server: %v", err)
			}
		}()
	}

	r := &runner{st: st, client: &http.Client{Timeout: 60 * time.Second}, running: map[int64]*runningJob{}}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	ctx, stopPolling := context.WithCancel(context.Background())
	defer stopPolling()

	st.mu.Lock()
	st.process = "running"
	st.mu.Unlock()
	reloadTick := time.NewTicker(reloadConfigInterval)
	graceful := make(chan struct{})
	var gracefulOnce sync.Once
	go func() {
		for {
			st.mu.Lock()
			interval := time.Duration(st.cfg.CheckInterval) * time.Second
			st.mu.Unlock()
			if interval <= 0 {
				interval = defaultCheckInterval
			}
			r.poll(ctx)
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
			}
		}
	}()
	for {
		select {
		case <-reloadTick.C:
			st.reload(false)
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				log.Printf("Reloading configuration on SIGHUP")
				st.reload(true)
			case syscall.SIGQUIT:
				gracefulOnce.Do(func() {
					log.Printf("Starting graceful shutdown (waiting for running jobs)")
					st.mu.Lock()
					st.process = "graceful-shutdown"
					st.mu.Unlock()
					stopPolling()
					go func() { r.wg.Wait(); close(graceful) }()
				})
			default:
				log.Printf("Starting forceful shutdown signal=%s", sig)
				st.mu.Lock()
				st.process = "forceful-shutdown"
				st.mu.Unlock()
				stopPolling()
				r.abortAll()
				r.wg.Wait()
				os.Exit(1)
			}
		case <-graceful:
			log.Printf("All workers stopped. Can exit now")
			os.Exit(0)
		}
	}
}
