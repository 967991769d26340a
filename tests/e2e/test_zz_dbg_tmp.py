from tests.e2e.test_helm_chart import *  # noqa

def test_dbg(request, kube, install, gitlab, tmp_path):
    namespace = install.watched[0] if install.watched else request.getfixturevalue("namespace")
    runners = Runners(kube, namespace, gitlab.url)
    runners.put_secret("gitlab-api", {"token": PAT})
    operator = ChartOperator(install, tmp_path).start()
    try:
        runners.create(runners.manifest(replicas=2))
        status = runners.wait_ready()["status"]
        runner_id = status["runnerId"]
        token = runners.secret_data(status["tokenSecretName"])["token"]
        system_id = runners.secret_data(status["configSecretName"])["system-id-1"]
        register_manager(gitlab, token, system_id)
        print("MANAGERS", list(gitlab.runners[runner_id].managers))
        runners.patch_spec(description="x", replicas=1)
        import time; time.sleep(8)
        print("MANAGERS", list(gitlab.runners[runner_id].managers))
        print("EVENTS", runners.event_reasons())
        print([ (c.method, c.path, c.status) for c in gitlab.calls])
    finally:
        operator.stop()
    print("\n".join(l for l in operator.output().splitlines() if "Traceback" in l or "rror" in l or "orbidden" in l)[:5000])
