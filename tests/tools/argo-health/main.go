// Command argo-health runs an Argo CD custom health check (a Lua script, as set under
// `resource.customizations.health.<group>_<kind>` in argocd-cm) over Kubernetes objects, the way Argo CD does,
// with the interpreter Argo CD embeds (github.com/yuin/gopher-lua).
//
//	argo-health SCRIPT [FILE]
//
// FILE (default: stdin) holds JSON: one object, a JSON array of objects, or a List (`{"items": [...]}`). For each
// object, one JSON line on stdout: its kind, name, and the health status and message the script returned.
//
// What is reproduced from Argo CD (util/lua/lua.go and gitops-engine's pkg/health/health.go):
//   - an object with metadata.deletionTimestamp is "Progressing"/"Pending deletion" without running the script;
//   - a fresh interpreter per object without the standard libraries (a custom check's default, useOpenLibs false),
//     then the package, base and table libraries; a 1 s deadline;
//   - the object, decoded as unstructured JSON (integers as int64), converted to Lua tables: maps with string keys,
//     arrays as sequences from 1, numbers as Lua numbers, JSON nulls dropped; set as the global `obj`;
//   - the value the script leaves on top of the stack must be a table; a status outside Healthy, Progressing,
//     Degraded, Suspended, Missing and Unknown becomes Unknown "Lua returned an invalid health status";
//   - a script error becomes Unknown with the error as the message.
//
// Not reproduced: Argo CD's "safe" os library (these scripts do not use os), and the JSON round trip of the
// returned table (the status and message fields are read directly).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

var validStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

type health struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "argo-health:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) < 1 || len(args) > 2 {
		return fmt.Errorf("usage: argo-health SCRIPT [FILE]")
	}
	script, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	input := stdin
	if len(args) == 2 {
		f, err := os.Open(args[1])
		if err != nil {
			return err
		}
		defer f.Close()
		input = f
	}
	objects, err := decode(input)
	if err != nil {
		return err
	}
	out := json.NewEncoder(stdout)
	for _, object := range objects {
		status, message := assess(object, string(script))
		if err := out.Encode(health{field(object, "kind"), field(object, "metadata", "name"), status, message}); err != nil {
			return err
		}
	}
	return nil
}

func field(object map[string]interface{}, path ...string) string {
	var current interface{} = object
	for _, key := range path {
		m, ok := current.(map[string]interface{})
		if !ok {
			return ""
		}
		current = m[key]
	}
	s, _ := current.(string)
	return s
}

// assess is Argo CD's health of one object under a custom health script.
func assess(object map[string]interface{}, script string) (string, string) {
	if field(object, "metadata", "deletionTimestamp") != "" {
		return "Progressing", "Pending deletion"
	}
	status, message, err := runScript(object, script)
	if err != nil {
		return "Unknown", err.Error()
	}
	if !validStatuses[status] {
		return "Unknown", "Lua returned an invalid health status"
	}
	return status, message
}

func runScript(object map[string]interface{}, script string) (string, string, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return "", "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, object))
	if err := l.DoString(script); err != nil {
		return "", "", err
	}
	returned := l.Get(-1)
	table, ok := returned.(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("expect table output from Lua script, not %s", returned.Type().String())
	}
	status, _ := table.RawGetString("status").(lua.LString)
	message, _ := table.RawGetString("message").(lua.LString)
	return string(status), string(message), nil
}

// toLua converts decoded JSON as Argo CD does: nil (a JSON null) becomes nil, so the key is absent in Lua.
func toLua(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []interface{}:
		table := l.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case map[string]interface{}:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(l, item))
		}
		return table
	}
	return lua.LNil
}

// decode reads one object, an array of objects or a List. Numbers are decoded as unstructured JSON decodes them in
// Argo CD: int64 when integral, float64 otherwise.
func decode(input io.Reader) ([]map[string]interface{}, error) {
	decoder := json.NewDecoder(input)
	decoder.UseNumber()
	var raw interface{}
	if err := decoder.Decode(&raw); err != nil {
		return nil, fmt.Errorf("input is not JSON: %w", err)
	}
	raw = numbers(raw)
	var items []interface{}
	switch v := raw.(type) {
	case []interface{}:
		items = v
	case map[string]interface{}:
		if list, ok := v["items"].([]interface{}); ok {
			items = list
		} else {
			items = []interface{}{v}
		}
	default:
		return nil, fmt.Errorf("input is neither an object nor an array")
	}
	objects := make([]map[string]interface{}, 0, len(items))
	for i, item := range items {
		object, ok := item.(map[string]interface{})
		if !ok {
			return nil, fmt.Errorf("item %d is not an object", i)
		}
		objects = append(objects, object)
	}
	return objects, nil
}

func numbers(value interface{}) interface{} {
	switch v := value.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []interface{}:
		for i := range v {
			v[i] = numbers(v[i])
		}
	case map[string]interface{}:
		for key := range v {
			v[key] = numbers(v[key])
		}
	}
	return value
}
