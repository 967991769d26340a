package main

// The kubernetes executor: per job, the Kubernetes API calls gitlab-runner's executors/kubernetes makes with default
// settings (attach strategy, no services, no cache), in the same order, with the manager pod's own ServiceAccount
// token through in-cluster configuration. docs/development/runner-standin.md lists each call and the function of
// gitlab-runner's source it follows; https://docs.gitlab.com/runner/executors/kubernetes/ documents the settings.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/util/exec"
)

const (
	buildContainer  = "build"
	helperContainer = "helper"
	// gitlab-runner's default helper image (helpers/container/helperimage); it cannot be pulled here, so tests set
	// helper_image.
	defaultHelperImage  = "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v" + version
	defaultPollInterval = 3
	defaultPollTimeout  = 180
	annotationPrefix    = "runner.gitlab.com/"
	informerSyncTimeout = 10 * time.Second
	shellProfileHint    = "Check https://docs.gitlab.com/runner/shells/#shell-profile-loading for more information"
)

// KubernetesConfig is the part of [runners.kubernetes] the stand-in honours (common/config.go's KubernetesConfig).
type KubernetesConfig struct {
	Host                             string            `toml:"host"`
	BearerToken                      string            `toml:"bearer_token"`
	CAFile                           string            `toml:"ca_file"`
	Namespace                        string            `toml:"namespace"`
	Image                            string            `toml:"image"`
	HelperImage                      string            `toml:"helper_image"`
	ImagePullSecrets                 []string          `toml:"image_pull_secrets"`
	PullPolicy                       any               `toml:"pull_policy"` // a string or a list, as in gitlab-runner
	ServiceAccount                   string            `toml:"service_account"`
	Privileged                       *bool             `toml:"privileged"`
	CPURequest                       string            `toml:"cpu_request"`
	CPULimit                         string            `toml:"cpu_limit"`
	MemoryRequest                    string            `toml:"memory_request"`
	MemoryLimit                      string            `toml:"memory_limit"`
	HelperCPURequest                 string            `toml:"helper_cpu_request"`
	HelperCPULimit                   string            `toml:"helper_cpu_limit"`
	HelperMemoryRequest              string            `toml:"helper_memory_request"`
	HelperMemoryLimit                string            `toml:"helper_memory_limit"`
	NodeSelector                     map[string]string `toml:"node_selector"`
	NodeTolerations                  map[string]string `toml:"node_tolerations"`
	PodLabels                        map[string]string `toml:"pod_labels"`
	PodAnnotations                   map[string]string `toml:"pod_annotations"`
	PollInterval                     int               `toml:"poll_interval"`
	PollTimeout                      int               `toml:"poll_timeout"`
	PodTerminationGracePeriodSeconds *int64            `toml:"pod_termination_grace_period_seconds"`
	CleanupGracePeriodSeconds        *int64            `toml:"cleanup_grace_period_seconds"`
}

// jobVariable, jobImage and jobCredential are the fields of GitLab's job payload the executor reads.
type jobVariable struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Public bool   `json:"public"`
	File   bool   `json:"file"`
}

type jobImage struct {
	Name       string   `json:"name"`
	Entrypoint []string `json:"entrypoint"`
	Command    []string `json:"command"`
}

type jobCredential struct {
	Type     string `json:"type"`
	URL      string `json:"url"`
	Username string `json:"username"`
	Password string `json:"password"`
}

func (kc *KubernetesConfig) pollInterval() time.Duration {
	if kc.PollInterval <= 0 {
		return defaultPollInterval * time.Second
	}
	return time.Duration(kc.PollInterval) * time.Second
}

func (kc *KubernetesConfig) pollTimeout() time.Duration {
	if kc.PollTimeout <= 0 {
		return defaultPollTimeout * time.Second
	}
	return time.Duration(kc.PollTimeout) * time.Second
}

// pullPolicy maps gitlab-runner's pull_policy (first entry) to the Kubernetes one; "" leaves the cluster default.
func (kc *KubernetesConfig) pullPolicy() corev1.PullPolicy {
	var first string
	switch v := kc.PullPolicy.(type) {
	case string:
		first = v
	case []any:
		if len(v) > 0 {
			first, _ = v[0].(string)
		}
	}
	switch first {
	case "always":
		return corev1.PullAlways
	case "never":
		return corev1.PullNever
	case "if-not-present":
		return corev1.PullIfNotPresent
	}
	return ""
}

// restConfig: with no host, in-cluster configuration (the pod's ServiceAccount token and ca.crt, and
// KUBERNETES_SERVICE_HOST/PORT), as getKubeClientConfig does.
func (kc *KubernetesConfig) restConfig() (*rest.Config, error) {
	if kc.Host == "" {
		return rest.InClusterConfig()
	}
	return &rest.Config{Host: kc.Host, BearerToken: kc.BearerToken, TLSClientConfig: rest.TLSClientConfig{CAFile: kc.CAFile}}, nil
}

type kubeJob struct {
	rc       RunnerConfig
	kc       KubernetesConfig
	j        *job
	systemID string
	trace    *jobTrace
	cfg      *rest.Config
	client   kubernetes.Interface
	ns       string
	image    string
	name     string // gitlab-runner's Build.ProjectUniqueName(): the pods' and Secrets' generateName, and a label
	pod      *corev1.Pod
	secret   *corev1.Secret
	watcher  *podWatcher
}

// buildError is a failure of the user's script (script_failure); any other error is a system failure.
type buildError struct{ exitCode int }

func (e *buildError) Error() string {
	return fmt.Sprintf("command terminated with exit code %d", e.exitCode)
}

// runKubernetesJob runs one job through the Kubernetes API and returns GitLab's final state, failure reason and exit
// code. The trace gets the lines gitlab-runner writes at each step.
func runKubernetesJob(ctx context.Context, rc RunnerConfig, j *job, systemID string, trace *jobTrace) (string, string, int) {
	e := &kubeJob{rc: rc, j: j, systemID: systemID, trace: trace}
	if rc.Kubernetes != nil {
		e.kc = *rc.Kubernetes
	}
	trace.Printf("Running with gitlab-runner %s (standin)", version)
	trace.Printf("  on %s %s, system ID: %s", rc.Name, shortToken(rc.Token), systemID)
	trace.Printf("Preparing the \"kubernetes\" executor")
	if err := e.prepareExecutor(); err != nil {
		trace.Printf("ERROR: Preparation failed: %v", err)
		trace.Printf("ERROR: Job failed (system failure): %v", err)
		return "failed", "runner_system_failure", 1
	}
	trace.Printf("Preparing environment")
	defer e.cleanup()
	if err := e.ensurePodConfigured(ctx); err != nil {
		e.printWarningEvents()
		trace.Printf("ERROR: Job failed (system failure): prepare environment: %v. %s", err, shellProfileHint)
		return "failed", "runner_system_failure", 1
	}
	trace.Printf("Running on %s via %s...", e.pod.Name, hostname())
	trace.Printf("Executing \"step_script\" stage of the job script")
	err := e.runStage(ctx, "step_script", stepScript(j))
	var be *buildError
	switch {
	case err == nil:
		trace.Printf("Cleaning up project directory and file based variables")
		trace.Printf("Job succeeded")
		return "success", "", 0
	case errors.As(err, &be):
		e.printWarningEvents()
		trace.Printf("ERROR: Job failed: %v", err)
		return "failed", "script_failure", be.exitCode
	default:
		e.printWarningEvents()
		trace.Printf("ERROR: Job failed (system failure): %v", err)
		return "failed", "runner_system_failure", 1
	}
}

// prepareExecutor: Prepare() and checkDefaults() in kubernetes.go: the image, the namespace, the client.
func (e *kubeJob) prepareExecutor() error {
	e.image = e.j.Image.Name // the job's image wins over [runners.kubernetes] image
	if e.image == "" {
		e.image = e.kc.Image
	}
	if e.image == "" {
		return errors.New("no image specified and no default set in config")
	}
	e.ns = e.kc.Namespace
	if e.ns == "" {
		e.trace.Printf("WARNING: Namespace is empty, therefore assuming 'default'.")
		e.ns = "default"
	}
	e.trace.Printf("Using Kubernetes namespace: %s", e.ns)
	cfg, err := e.kc.restConfig()
	if err != nil {
		return fmt.Errorf("getting Kubernetes config: %w", err)
	}
	if e.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("connecting to Kubernetes: %w", err)
	}
	e.cfg = cfg
	e.name = projectUniqueName(e.rc.Token, e.j.JobInfo.ProjectID)
	e.trace.Printf("Using Kubernetes executor with image %s ...", e.image)
	e.trace.Printf("Using attach strategy to execute scripts...")
	return nil
}

// ensurePodConfigured: ensurePodsConfigured() -- informers, credentials, the pod, waiting for it, trapping scripts.
func (e *kubeJob) ensurePodConfigured(ctx context.Context) error {
	e.startInformer(ctx)
	if err := e.setupCredentials(ctx); err != nil {
		return fmt.Errorf("setting up credentials: %w", err)
	}
	if err := e.setupBuildPod(ctx); err != nil {
		return fmt.Errorf("setting up build pod: %w", err)
	}
	if err := e.waitForPodRunning(ctx); err != nil {
		return fmt.Errorf("waiting for pod running: %w", err)
	}
	if err := e.saveScript(ctx, "detect_shell_script", detectShellScript); err != nil {
		return fmt.Errorf("setting up trapping scripts on emptyDir: %w", err)
	}
	return nil
}

// startInformer: informers are used only when a SelfSubjectAccessReview allows both list and watch on pods in the
// namespace; otherwise the executor polls with get.
func (e *kubeJob) startInformer(ctx context.Context) {
	for _, verb := range []string{"list", "watch"} {
		review := &authv1.SelfSubjectAccessReview{Spec: authv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authv1.ResourceAttributes{Namespace: e.ns, Verb: verb, Resource: "pods"},
		}}
		result, err := e.client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		var reason string
		switch {
		case err != nil:
			reason = err.Error()
		case !result.Status.Allowed:
			reason = fmt.Sprintf("not allowed: %s on pods", verb)
		}
		if reason != "" {
			e.trace.Printf("WARNING: won't use informers: %q", reason)
			logf("WARNING: won't use informers: %q job=%d", reason, e.j.ID)
			return
		}
	}
	watcher, err := newPodWatcher(ctx, e.client, e.ns, e.podLabels())
	if err != nil {
		e.trace.Printf("WARNING: won't use informers: %q", err.Error())
		logf("WARNING: won't use informers: %q job=%d", err.Error(), e.j.ID)
		return
	}
	e.watcher = watcher
}

// setupCredentials: a kubernetes.io/dockercfg Secret when the job has registry credentials.
func (e *kubeJob) setupCredentials(ctx context.Context) error {
	auths := map[string]map[string]string{}
	for _, c := range e.j.Credentials {
		if c.Type != "registry" || c.URL == "" {
			continue
		}
		auth := base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password))
		auths[c.URL] = map[string]string{"username": c.Username, "password": c.Password, "auth": auth}
	}
	if len(auths) == 0 {
		return nil
	}
	content, err := json.Marshal(auths)
	if err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{GenerateName: e.name + "-", Namespace: e.ns},
		Type:       corev1.SecretTypeDockercfg,
		Data:       map[string][]byte{corev1.DockerConfigKey: content},
	}
	e.secret, err = e.client.CoreV1().Secrets(e.ns).Create(ctx, secret, metav1.CreateOptions{})
	return err
}

func (e *kubeJob) podLabels() map[string]string {
	labels := map[string]string{
		"pod":                                  e.name,
		"job.runner.gitlab.com/pod":            e.name,
		"project.runner.gitlab.com/id":         strconv.FormatInt(e.j.JobInfo.ProjectID, 10),
		"manager.runner.gitlab.com/id-short":   sanitizeLabel(shortToken(e.systemID)),
		"manager.runner.gitlab.com/name":       sanitizeLabel(e.rc.Name),
		"project.runner.gitlab.com/namespace":  sanitizeLabel(e.j.JobInfo.ProjectName),
		"job.runner.gitlab.com/runner-version": version,
	}
	for k, v := range e.kc.PodLabels {
		labels[k] = sanitizeLabel(v)
	}
	return labels
}

// setupBuildPod: the pod of preparePodConfig(), created with the executor's credentials, then the owner reference
// that makes the credentials Secret go with the pod (setOwnerReferencesForResources).
func (e *kubeJob) setupBuildPod(ctx context.Context) error {
	annotations := map[string]string{
		"job." + annotationPrefix + "id":         strconv.FormatInt(e.j.ID, 10),
		"job." + annotationPrefix + "url":        e.j.jobURL(),
		"job." + annotationPrefix + "sha":        e.j.GitInfo.Sha,
		"job." + annotationPrefix + "before_sha": e.j.GitInfo.BeforeSha,
		"job." + annotationPrefix + "ref":        e.j.GitInfo.Ref,
		"job." + annotationPrefix + "name":       e.j.JobInfo.Name,
		"project." + annotationPrefix + "id":     strconv.FormatInt(e.j.JobInfo.ProjectID, 10),
	}
	for k, v := range e.kc.PodAnnotations {
		annotations[k] = v
	}
	var pullSecrets []corev1.LocalObjectReference
	for _, name := range e.kc.ImagePullSecrets {
		pullSecrets = append(pullSecrets, corev1.LocalObjectReference{Name: name})
	}
	if e.secret != nil {
		pullSecrets = append(pullSecrets, corev1.LocalObjectReference{Name: e.secret.Name})
	}
	helperImage := e.kc.HelperImage
	if helperImage == "" {
		helperImage = defaultHelperImage
	}
	buildRes, err := resources(e.kc.CPURequest, e.kc.MemoryRequest, e.kc.CPULimit, e.kc.MemoryLimit)
	if err != nil {
		return err
	}
	helperRes, err := resources(e.kc.HelperCPURequest, e.kc.HelperMemoryRequest, e.kc.HelperCPULimit, e.kc.HelperMemoryLimit)
	if err != nil {
		return err
	}
	mounts := []corev1.VolumeMount{
		{Name: "scripts", MountPath: e.scriptsDir()},
		{Name: "logs", MountPath: e.logsDir()},
		{Name: "repo", MountPath: "/builds"},
	}
	privileged := e.kc.Privileged != nil && *e.kc.Privileged
	security := &corev1.SecurityContext{
		Privileged:   &privileged,
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"NET_RAW"}},
	}
	container := func(name, image string, res corev1.ResourceRequirements, env []corev1.EnvVar) corev1.Container {
		return corev1.Container{
			Name: name, Image: image, ImagePullPolicy: e.kc.pullPolicy(), Command: dockerCommand, Env: env,
			Resources: res, VolumeMounts: mounts, SecurityContext: security, Stdin: true,
		}
	}
	emptyDir := corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: e.name + "-", Namespace: e.ns, Labels: e.podLabels(), Annotations: annotations,
		},
		Spec: corev1.PodSpec{
			Volumes: []corev1.Volume{
				{Name: "repo", VolumeSource: emptyDir},
				{Name: "scripts", VolumeSource: emptyDir},
				{Name: "logs", VolumeSource: emptyDir},
			},
			ServiceAccountName: e.kc.ServiceAccount,
			RestartPolicy:      corev1.RestartPolicyNever,
			NodeSelector:       e.kc.NodeSelector,
			Tolerations:        tolerations(e.kc.NodeTolerations),
			InitContainers: []corev1.Container{{
				Name: "init-permissions", Image: helperImage, ImagePullPolicy: e.kc.pullPolicy(), VolumeMounts: mounts,
				Command:         []string{"sh", "-c", fmt.Sprintf("touch %[1]s && (chmod 777 %[1]s || exit 0)", e.logFile())},
				SecurityContext: security,
			}},
			Containers: []corev1.Container{
				container(buildContainer, e.image, buildRes, e.j.envVars()),
				container(helperContainer, helperImage, helperRes, nil),
			},
			TerminationGracePeriodSeconds: e.kc.PodTerminationGracePeriodSeconds,
			ImagePullSecrets:              pullSecrets,
		},
	}
	e.trace.Printf("Creating build pod")
	created, err := e.client.CoreV1().Pods(e.ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	e.pod = created
	logf("Created job pod %s/%s job=%d", e.ns, created.Name, e.j.ID)
	if e.watcher != nil {
		e.watcher.podName.Store(created.Name)
	}
	if e.secret != nil {
		secret := e.secret.DeepCopy()
		secret.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: created.Name, UID: created.UID}}
		updated, err := e.client.CoreV1().Secrets(e.ns).Update(ctx, secret, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("error setting ownerReferences: %w", err)
		}
		e.secret = updated
	}
	return nil
}

// waitForPodRunning: get the pod every poll_interval until it runs, up to poll_timeout (util.go); the informer, when
// there is one, reports terminal errors (image pull failures, a pod being deleted) as soon as they happen.
func (e *kubeJob) waitForPodRunning(ctx context.Context) error {
	deadline := time.Now().Add(e.kc.pollTimeout())
	for {
		pod, err := e.client.CoreV1().Pods(e.ns).Get(ctx, e.pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		switch pod.Status.Phase {
		case corev1.PodRunning:
			return nil
		case corev1.PodSucceeded, corev1.PodFailed:
			return fmt.Errorf("pod %q status is %q", pod.Name, pod.Status.Phase)
		}
		if err := terminalContainerError(append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...)); err != nil {
			return err
		}
		e.trace.Printf("Waiting for pod %s/%s to be running, status is %s", e.ns, pod.Name, pod.Status.Phase)
		if time.Now().After(deadline) {
			return errors.New("timed out waiting for pod to start")
		}
		var watched <-chan error
		if e.watcher != nil {
			watched = e.watcher.errors
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-watched:
			return err
		case <-time.After(e.kc.pollInterval()):
		}
	}
}

// runStage: save the stage's script on the scripts emptyDir (pods/exec), then start it in the build container by
// writing its command to the container's stdin (pods/attach); its output, and the exit status the trap writes, come
// from the log file, followed in the helper container (pods/exec) as the log processor does.
func (e *kubeJob) runStage(ctx context.Context, stage, script string) error {
	if err := e.saveScript(ctx, stage, script); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	status := make(chan int, 1)
	logErr := make(chan error, 1)
	go func() { logErr <- e.followLog(ctx, status) }()

	stdin, feed := io.Pipe()
	attachErr := make(chan error, 1)
	go func() {
		attachErr <- e.stream(ctx, "attach", buildContainer, nil, stdin, nil)
	}()
	command := fmt.Sprintf("sh %s %s 2>&1 | tee -a %s\n", e.scriptPath("detect_shell_script"), e.scriptPath(stage), e.logFile())
	go func() { _, _ = feed.Write([]byte(command)) }()
	defer feed.Close()

	var watched <-chan error
	if e.watcher != nil {
		watched = e.watcher.errors
	}
	select {
	case code := <-status:
		if code != 0 {
			return &buildError{exitCode: code}
		}
		return nil
	case err := <-attachErr:
		return fmt.Errorf("attaching to the build container: %w", err)
	case err := <-logErr:
		return fmt.Errorf("processing the log file: %w", err)
	case err := <-watched:
		return err
	case <-ctx.Done():
		return errors.New("build aborted")
	}
}

// followLog streams the log file from the helper container into the trace until the trap's exit status line.
func (e *kubeJob) followLog(ctx context.Context, status chan<- int) error {
	reader, writer := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := e.stream(ctx, "exec", helperContainer, []string{"tail", "-n", "+1", "-f", e.logFile()}, nil, writer)
		writer.CloseWithError(err)
		done <- err
	}()
	scanner := bufio.NewScanner(reader)
	scanner.Buffer(make([]byte, 64*1024), 1024*1024)
	for scanner.Scan() {
		line := scanner.Text()
		var exit struct {
			Code *int `json:"command_exit_code"`
		}
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &exit) == nil && exit.Code != nil {
			status <- *exit.Code
			return nil
		}
		e.trace.Printf("%s", line)
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := <-done; err != nil {
		return err
	}
	return errors.New("the log stream ended before the script's exit status")
}

// saveScript: saveScriptOnEmptyDir() -- the build container's shell reads, on stdin through pods/exec, a script that
// writes the file.
func (e *kubeJob) saveScript(ctx context.Context, name, content string) error {
	path := e.scriptPath(name)
	save := fmt.Sprintf("mkdir -p %s\ncat > %s <<'GLRT_STANDIN_EOF'\n%s\nGLRT_STANDIN_EOF\nchmod 777 %s\n",
		shellQuote(e.scriptsDir()), shellQuote(path), content, shellQuote(path))
	var out strings.Builder
	err := e.stream(ctx, "exec", buildContainer, dockerCommand, strings.NewReader(save), &out)
	var exitErr exec.CodeExitError
	if errors.As(err, &exitErr) {
		return fmt.Errorf("saving %s (exit code %d): %s", path, exitErr.Code, strings.TrimSpace(out.String()))
	}
	return err
}

// stream runs pods/exec (command) or pods/attach in a container of the job pod, over SPDY (POST, the "create" verb).
func (e *kubeJob) stream(ctx context.Context, sub, container string, command []string, stdin io.Reader, stdout io.Writer) error {
	req := e.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(e.ns).Name(e.pod.Name).SubResource(sub)
	if sub == "exec" {
		req = req.VersionedParams(&corev1.PodExecOptions{
			Container: container, Command: command, Stdin: stdin != nil, Stdout: stdout != nil, Stderr: stdout != nil,
		}, scheme.ParameterCodec)
	} else {
		req = req.VersionedParams(&corev1.PodAttachOptions{
			Container: container, Stdin: stdin != nil, Stdout: stdout != nil, Stderr: stdout != nil,
		}, scheme.ParameterCodec)
	}
	executor, err := remotecommand.NewSPDYExecutor(e.cfg, "POST", req.URL())
	if err != nil {
		return err
	}
	var out io.Writer
	if stdout != nil {
		out = &lockedWriter{w: stdout} // stdout and stderr are copied by two goroutines
	}
	return executor.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: out, Stderr: out})
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// printWarningEvents: with print_pod_warning_events (default true), a failed job's trace gets the pod's Warning
// events (events list).
func (e *kubeJob) printWarningEvents() {
	if e.pod == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	selector := fmt.Sprintf("involvedObject.name=%s,type=Warning", e.pod.Name)
	events, err := e.client.CoreV1().Events(e.ns).List(ctx, metav1.ListOptions{FieldSelector: selector})
	if err != nil {
		e.trace.Printf("WARNING: Error retrieving events list: %v", err)
		return
	}
	for _, ev := range events.Items {
		e.trace.Printf("WARNING: Event retrieved from the cluster: %s", ev.Message)
	}
}

// cleanup: cleanupResources() -- delete the pod (foreground propagation, so the Secret it owns goes with it), and
// the credentials Secret only when it has no owner reference (setting it failed).
func (e *kubeJob) cleanup() {
	if e.watcher != nil {
		e.watcher.stop()
	}
	if e.client == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if e.pod != nil {
		propagation := metav1.DeletePropagationForeground
		err := e.client.CoreV1().Pods(e.ns).Delete(ctx, e.pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: e.kc.CleanupGracePeriodSeconds, PropagationPolicy: &propagation,
		})
		if err != nil {
			e.trace.Printf("ERROR: Error cleaning up pod: %v", err)
		} else {
			logf("Deleted job pod %s/%s job=%d", e.ns, e.pod.Name, e.j.ID)
		}
	}
	if e.secret != nil && len(e.secret.OwnerReferences) == 0 {
		if err := e.client.CoreV1().Secrets(e.ns).Delete(ctx, e.secret.Name, metav1.DeleteOptions{
			GracePeriodSeconds: e.kc.CleanupGracePeriodSeconds,
		}); err != nil {
			e.trace.Printf("ERROR: Error cleaning up secrets: %v", err)
		}
	}
}

func (e *kubeJob) scriptsDir() string {
	return fmt.Sprintf("/scripts-%d-%d", e.j.JobInfo.ProjectID, e.j.ID)
}
func (e *kubeJob) logsDir() string { return fmt.Sprintf("/logs-%d-%d", e.j.JobInfo.ProjectID, e.j.ID) }
func (e *kubeJob) logFile() string { return e.logsDir() + "/output.log" }
func (e *kubeJob) scriptPath(name string) string {
	return e.scriptsDir() + "/" + name
}

// podWatcher: internal/watchers/pod.go -- an informer on the job's pods (namespace and labels scoped) that reports
// terminal errors of the job pod.
type podWatcher struct {
	factory informers.SharedInformerFactory
	cancel  context.CancelFunc
	podName atomicString
	errors  chan error
}

func newPodWatcher(ctx context.Context, client kubernetes.Interface, namespace string, podLabels map[string]string) (*podWatcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &podWatcher{cancel: cancel, errors: make(chan error, 1)}
	w.factory = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = labels.SelectorFromSet(podLabels).String()
		}))
	informer := w.factory.Core().V1().Pods().Informer()
	check := func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok || pod.Name != w.podName.Load() {
			return
		}
		var err error
		if pod.DeletionTimestamp != nil {
			err = fmt.Errorf("pod %q is being deleted", namespace+"/"+pod.Name)
		} else if cerr := terminalContainerError(append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...)); cerr != nil {
			err = fmt.Errorf("pod %q failed: %w", namespace+"/"+pod.Name, cerr)
		}
		if err != nil {
			select {
			case w.errors <- err:
			default:
			}
		}
	}
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: check, UpdateFunc: func(_, obj any) { check(obj) },
	})
	w.factory.Start(ctx.Done())
	// The first list must succeed within a bounded time (maxSyncDuration), or the executor polls instead.
	syncCtx, syncCancel := context.WithTimeout(ctx, informerSyncTimeout)
	defer syncCancel()
	for _, synced := range w.factory.WaitForCacheSync(syncCtx.Done()) {
		if !synced {
			w.stop()
			return nil, errors.New("not synced: pods informer")
		}
	}
	logf("Using informers for the job pods in %s", namespace)
	return w, nil
}

func (w *podWatcher) stop() {
	w.cancel()
	w.factory.Shutdown()
}

// terminalContainerError: CheckTerminalContainerErrors() -- waiting reasons the pod cannot recover from.
func terminalContainerError(statuses []corev1.ContainerStatus) error {
	for _, s := range statuses {
		if s.Ready || s.State.Waiting == nil {
			continue
		}
		switch s.State.Waiting.Reason {
		case "InvalidImageName", "ErrImagePull", "ImagePullBackOff":
			return fmt.Errorf("image pull failed: %s", s.State.Waiting.Message)
		case "CrashLoopBackOff":
			return fmt.Errorf("container %q is in CrashLoopBackOff: %s", s.Name, s.State.Waiting.Message)
		}
	}
	return nil
}

func resources(cpuRequest, memoryRequest, cpuLimit, memoryLimit string) (corev1.ResourceRequirements, error) {
	var out corev1.ResourceRequirements
	parse := func(list *corev1.ResourceList, name corev1.ResourceName, value string) error {
		if value == "" {
			return nil
		}
		q, err := resource.ParseQuantity(value)
		if err != nil {
			return fmt.Errorf("invalid %s %q: %w", name, value, err)
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[name] = q
		return nil
	}
	for _, p := range []struct {
		list  *corev1.ResourceList
		name  corev1.ResourceName
		value string
	}{
		{&out.Requests, corev1.ResourceCPU, cpuRequest}, {&out.Requests, corev1.ResourceMemory, memoryRequest},
		{&out.Limits, corev1.ResourceCPU, cpuLimit}, {&out.Limits, corev1.ResourceMemory, memoryLimit},
	} {
		if err := parse(p.list, p.name, p.value); err != nil {
			return out, err
		}
	}
	return out, nil
}

// tolerations: node_tolerations "key=value" = "Effect" (operator Equal), "key" = "Effect" (Exists), "" = ""
// (tolerate everything), as GetNodeTolerations does.
func tolerations(config map[string]string) []corev1.Toleration {
	var out []corev1.Toleration
	for keyValue, effect := range config {
		t := corev1.Toleration{Effect: corev1.TaintEffect(effect), Operator: corev1.TolerationOpExists}
		if key, value, found := strings.Cut(keyValue, "="); found {
			t.Key, t.Value, t.Operator = key, value, corev1.TolerationOpEqual
		} else {
			t.Key = keyValue
		}
		out = append(out, t)
	}
	return out
}

// The build container's command (the bash shell's DockerCommand): the first shell found, reading the commands the
// executor attaches to its stdin.
var dockerCommand = []string{"sh", "-c", "if [ -x /usr/local/bin/bash ]; then\n\texec /usr/local/bin/bash \n" +
	"elif [ -x /usr/bin/bash ]; then\n\texec /usr/bin/bash \nelif [ -x /bin/bash ]; then\n\texec /bin/bash \n" +
	"elif [ -x /usr/local/bin/sh ]; then\n\texec /usr/local/bin/sh \nelif [ -x /usr/bin/sh ]; then\n\texec /usr/bin/sh \n" +
	"elif [ -x /bin/sh ]; then\n\texec /bin/sh \nelif [ -x /busybox/sh ]; then\n\texec /busybox/sh \n" +
	"else\n\techo shell not found\n\texit 1\nfi\n\n"}

// detectShellScript: shells.BashDetectShellScript, run as `sh detect_shell_script <stage script>`.
const detectShellScript = `if [ -x /usr/local/bin/bash ]; then
	exec /usr/local/bin/bash "$@"
elif [ -x /usr/bin/bash ]; then
	exec /usr/bin/bash "$@"
elif [ -x /bin/bash ]; then
	exec /bin/bash "$@"
elif [ -x /usr/local/bin/sh ]; then
	exec /usr/local/bin/sh "$@"
elif [ -x /usr/bin/sh ]; then
	exec /usr/bin/sh "$@"
elif [ -x /bin/sh ]; then
	exec /bin/sh "$@"
elif [ -x /busybox/sh ]; then
	exec /busybox/sh "$@"
else
	echo shell not found
	exit 1
fi`

// stepScript: the job's script lines, each echoed as "$ line" first, stopping at the first failing one; the EXIT trap
// writes the exit status as the JSON line the log processor looks for (shells.TrapCommandExitStatus).
func stepScript(j *job) string {
	var b strings.Builder
	b.WriteString(`trap 'printf "{\"command_exit_code\": %d, \"script\": \"%s\"}\n" $? "$0"' EXIT` + "\n")
	b.WriteString("set -e\n")
	for _, step := range j.Steps {
		for _, line := range step.Script {
			fmt.Fprintf(&b, "printf '%%s\\n' %s\n%s\n", shellQuote("$ "+line), line)
		}
	}
	return b.String()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

var notDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// projectUniqueName: "runner-<short token>-project-<id>-concurrent-<n>" (one job at a time: n = 0), DNS-safe.
func projectUniqueName(token string, projectID int64) string {
	short := notDNS.ReplaceAllString(strings.ToLower(shortToken(token)), "")
	return fmt.Sprintf("runner-%s-project-%d-concurrent-0", short, projectID)
}

// shortToken: the token's first 8 characters after its glrt- (and partition) prefix, as common.ShortenToken does.
func shortToken(token string) string {
	token = strings.TrimPrefix(token, "glrt-")
	if strings.HasPrefix(token, "t") {
		if _, rest, found := strings.Cut(token, "_"); found && len(rest) > 0 && strings.Index(token, "_") <= 3 {
			token = rest
		}
	}
	if len(token) > 8 {
		return token[:8]
	}
	return token
}

var labelInvalid = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

func sanitizeLabel(value string) string {
	value = labelInvalid.ReplaceAllString(value, "_")
	if len(value) > 63 {
		value = value[:63]
	}
	return strings.Trim(value, "._-")
}

type corev1EnvVar = corev1.EnvVar

func hostname() string {
	name, _ := os.Hostname()
	return name
}
