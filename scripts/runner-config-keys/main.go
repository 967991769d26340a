// Command runner-config-keys reads gitlab-runner's config structs from its module source (go/parser + go/ast, no
// build) and prints every config.toml key with its type as JSON: the data behind operator/glrt_operator/runner_config.
//
// Usage: go run ./scripts/runner-config-keys MODULE_DIR MODULE_VERSION RUNNER_VERSION
package main

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

const modulePath = "gitlab.com/gitlab-org/gitlab-runner"

// Node is one key's type. Kinds: string integer number boolean duration datetime string-or-array any object array map.
type Node struct {
	Kind        string           `json:"kind"`
	GoType      string           `json:"go_type,omitempty"`
	Description string           `json:"description,omitempty"`
	Enum        []string         `json:"enum,omitempty"`
	Optional    bool             `json:"pointer,omitempty"`
	Fields      map[string]*Node `json:"fields,omitempty"`
	Items       *Node            `json:"items,omitempty"`
	Values      *Node            `json:"values,omitempty"`
}

type pkg struct {
	dir     string
	types   map[string]ast.Expr
	imports map[string]map[string]string // file -> alias -> path
	typeFile map[string]string
}

var (
	moduleDir string
	pkgs      = map[string]*pkg{}
	usedFiles = map[string]bool{}
)

// External types, by qualified name: what BurntSushi/toml accepts for them.
var external = map[string]string{
	"time.Duration":         "duration",
	"time.Time":             "datetime",
	"intstr.IntOrString":    "int-or-string",
	"api.Capability":        "string",
	"api.ProcMountType":     "string",
	"api.URIScheme":         "string",
	"api.PullPolicy":        "string",
	"api.TaintEffect":       "string",
	"api.TolerationOperator": "string",
	"api.NodeSelectorOperator": "string",
	"api.SeccompProfileType": "string",
	"api.AppArmorProfileType": "string",
	"metav1.LabelSelectorOperator": "string",
	"units.Ulimit":          "string",
	"container.DeviceRequest": "any",
	"logrus.FieldLogger":    "skip",
	"json.RawMessage":       "any",
}

func load(importPath string) *pkg {
	if p, ok := pkgs[importPath]; ok {
		return p
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(importPath, modulePath), "/")
	dir := filepath.Join(moduleDir, rel)
	p := &pkg{dir: dir, types: map[string]ast.Expr{}, imports: map[string]map[string]string{}, typeFile: map[string]string{}}
	pkgs[importPath] = p
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments)
		if err != nil {
			panic(err)
		}
		fileKey := filepath.Join(rel, name)
		imps := map[string]string{}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			alias := filepath.Base(path)
			if imp.Name != nil {
				alias = imp.Name.Name
			}
			imps[alias] = path
		}
		p.imports[fileKey] = imps
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, s := range gd.Specs {
				ts := s.(*ast.TypeSpec)
				p.types[ts.Name.Name] = ts.Type
				p.typeFile[ts.Name.Name] = fileKey
			}
		}
	}
	return p
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "runner-config-keys: "+format+"\n", args...)
	os.Exit(1)
}

// named resolves a named type of package p.
func named(p *pkg, name string, depth int) *Node {
	switch name {
	case "string":
		return &Node{Kind: "string"}
	case "bool":
		return &Node{Kind: "boolean"}
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return &Node{Kind: "integer"}
	case "float32", "float64":
		return &Node{Kind: "number"}
	case "any":
		return &Node{Kind: "any"}
	}
	if name == "StringOrArray" {
		return &Node{Kind: "string-or-array", GoType: name}
	}
	expr, ok := p.types[name]
	if !ok {
		fail("type %s not found in %s", name, p.dir)
	}
	usedFiles[p.typeFile[name]] = true
	n := resolve(p, p.typeFile[name], expr, depth+1)
	if n != nil && n.GoType == "" {
		n.GoType = name
	}
	return n
}

func resolve(p *pkg, file string, expr ast.Expr, depth int) *Node {
	if depth > 30 {
		fail("type nesting too deep (recursive type?)")
	}
	switch t := expr.(type) {
	case *ast.Ident:
		return named(p, t.Name, depth)
	case *ast.StarExpr:
		n := resolve(p, file, t.X, depth)
		if n != nil {
			n.Optional = true
		}
		return n
	case *ast.ArrayType:
		items := resolve(p, file, t.Elt, depth)
		if items == nil {
			return nil
		}
		return &Node{Kind: "array", Items: items}
	case *ast.MapType:
		values := resolve(p, file, t.Value, depth)
		if values == nil {
			return nil
		}
		return &Node{Kind: "map", Values: values}
	case *ast.InterfaceType:
		return &Node{Kind: "any"}
	case *ast.SelectorExpr:
		alias := t.X.(*ast.Ident).Name
		qualified := alias + "." + t.Sel.Name
		importPath := p.imports[file][alias]
		if strings.HasPrefix(importPath, modulePath+"/") {
			return named(load(importPath), t.Sel.Name, depth)
		}
		kind, ok := external[qualified]
		if !ok {
			fail("unknown external type %s (%s): add it to the external table", qualified, importPath)
		}
		if kind == "skip" {
			return nil
		}
		return &Node{Kind: kind, GoType: qualified}
	case *ast.StructType:
		n := &Node{Kind: "object", Fields: map[string]*Node{}}
		for _, f := range t.Fields.List {
			tag := ""
			if f.Tag != nil {
				raw, _ := strconv.Unquote(f.Tag.Value)
				tag = raw
			}
			st := reflect.StructTag(tag)
			tomlTag, hasTag := st.Lookup("toml")
			key := strings.Split(tomlTag, ",")[0]
			if key == "-" {
				continue
			}
			if len(f.Names) == 0 { // embedded: BurntSushi/toml flattens untagged embedded structs
				inner := resolve(p, file, f.Type, depth)
				if inner == nil || inner.Kind != "object" {
					fail("embedded non-struct in %s", file)
				}
				for k, v := range inner.Fields {
					n.Fields[k] = v
				}
				continue
			}
			for _, name := range f.Names {
				if !name.IsExported() {
					continue
				}
				child := resolve(p, file, f.Type, depth)
				if child == nil {
					continue
				}
				k := key
				if !hasTag || k == "" {
					k = name.Name
				}
				child.Description = st.Get("description")
				for _, part := range strings.Split(st.Get("jsonschema"), ",") {
					if v, ok := strings.CutPrefix(part, "enum="); ok && v != "" {
						child.Enum = append(child.Enum, v)
					}
				}
				n.Fields[k] = child
			}
		}
		return n
	}
	fail("unsupported type expression %T in %s", expr, file)
	return nil
}

func main() {
	if len(os.Args) != 4 {
		fail("usage: runner-config-keys MODULE_DIR MODULE_VERSION RUNNER_VERSION")
	}
	moduleDir = os.Args[1]
	common := load(modulePath + "/common")
	root := named(common, "Config", 0)
	files := make([]string, 0, len(usedFiles))
	for f := range usedFiles {
		files = append(files, f)
	}
	sort.Strings(files)
	out := map[string]any{
		"source": map[string]any{
			"module":         modulePath,
			"module_version": os.Args[2],
			"runner_version": os.Args[3],
			"files":          files,
			"root_type":      "common.Config",
		},
		"config": root,
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		panic(err)
	}
}
