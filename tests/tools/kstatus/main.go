// Command kstatus prints what the kstatus library (sigs.k8s.io/cli-utils/pkg/kstatus/status, the rules Flux's
// health checks and `kubectl wait`-like tools apply) computes for Kubernetes objects.
//
//	kstatus [FILE]
//
// FILE (default: stdin) holds JSON: one object, a JSON array of objects, or a List (`{"items": [...]}`). For each
// object, one JSON line on stdout: its kind and name, and status.Compute's status (Current, InProgress, Failed,
// Terminating, ...), message and the standard conditions (Reconciling, Stalled) it derived.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

type result struct {
	Kind       string      `json:"kind"`
	Name       string      `json:"name"`
	Status     string      `json:"status"`
	Message    string      `json:"message"`
	Conditions []condition `json:"conditions"`
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	input := stdin
	if len(args) > 1 {
		return fmt.Errorf("usage: kstatus [FILE]")
	}
	if len(args) == 1 {
		f, err := os.Open(args[0])
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
	for i, object := range objects {
		u := &unstructured.Unstructured{Object: object}
		computed, err := status.Compute(u)
		if err != nil {
			return fmt.Errorf("object %d (%s %s): %w", i, u.GetKind(), u.GetName(), err)
		}
		conditions := make([]condition, 0, len(computed.Conditions))
		for _, c := range computed.Conditions {
			conditions = append(conditions, condition{string(c.Type), string(c.Status), c.Reason, c.Message})
		}
		line := result{u.GetKind(), u.GetName(), string(computed.Status), computed.Message, conditions}
		if err := out.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

// decode reads one object, an array of objects or a List, as the apiserver's JSON decoder would hand them to
// kstatus: through unstructured's own JSON decoding (integers become int64, as kstatus' NestedInt64 expects).
func decode(input io.Reader) ([]map[string]interface{}, error) {
	data, err := io.ReadAll(input)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("input is not JSON: %w", err)
	}
	var array []json.RawMessage
	if json.Unmarshal(raw, &array) != nil {
		var list struct {
			Items *[]json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, fmt.Errorf("input is neither an object nor an array: %w", err)
		}
		if list.Items != nil {
			array = *list.Items
		} else {
			array = []json.RawMessage{raw}
		}
	}
	objects := make([]map[string]interface{}, 0, len(array))
	for i, item := range array {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(item); err != nil {
			return nil, fmt.Errorf("object %d: %w", i, err)
		}
		objects = append(objects, u.Object)
	}
	return objects, nil
}
