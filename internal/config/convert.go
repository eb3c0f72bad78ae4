package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// convert turns a raw value from any source (YAML scalars and lists,
// environment strings, typed flag values) into a value of type t. Errors
// are phrased for people: `cannot parse "abc" as int`.
func convert(raw any, t reflect.Type) (reflect.Value, error) {
	out := reflect.New(t).Elem()
	if t == durationType {
		d, err := toDuration(raw)
		if err != nil {
			return out, err
		}
		out.SetInt(int64(d))
		return out, nil
	}
	rv := reflect.ValueOf(raw)
	switch t.Kind() {
	case reflect.String:
		if !isScalar(rv) {
			return out, cannotParse(raw, t)
		}
		out.SetString(fmt.Sprint(raw))
	case reflect.Bool:
		switch {
		case rv.Kind() == reflect.Bool:
			out.SetBool(rv.Bool())
		case rv.Kind() == reflect.String:
			b, err := strconv.ParseBool(strings.TrimSpace(rv.String()))
			if err != nil {
				return out, cannotParse(raw, t)
			}
			out.SetBool(b)
		default:
			return out, cannotParse(raw, t)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := toInt(rv)
		if err != nil {
			return out, cannotParse(raw, t)
		}
		if out.OverflowInt(n) {
			return out, fmt.Errorf("%d is out of range for %s", n, typeName(t))
		}
		out.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := toUint(rv)
		if err != nil {
			return out, cannotParse(raw, t)
		}
		if out.OverflowUint(n) {
			return out, fmt.Errorf("%d is out of range for %s", n, typeName(t))
		}
		out.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := toFloat(rv)
		if err != nil {
			return out, cannotParse(raw, t)
		}
		if out.OverflowFloat(f) {
			return out, fmt.Errorf("%v is out of range for %s", f, typeName(t))
		}
		out.SetFloat(f)
	case reflect.Slice:
		items, err := toStrings(rv)
		if err != nil {
			return out, cannotParse(raw, t)
		}
		s := reflect.MakeSlice(t, len(items), len(items))
		for i, item := range items {
			s.Index(i).SetString(item)
		}
		out.Set(s)
	default:
		return out, fmt.Errorf("unsupported type %s", t)
	}
	return out, nil
}

func toDuration(raw any) (time.Duration, error) {
	rv := reflect.ValueOf(raw)
	switch {
	case rv.Type() == durationType:
		return time.Duration(rv.Int()), nil
	case rv.Kind() == reflect.String:
		d, err := time.ParseDuration(strings.TrimSpace(rv.String()))
		if err != nil {
			return 0, fmt.Errorf("cannot parse %s as duration (use Go syntax such as \"90s\" or \"1m30s\")", describeValue(raw))
		}
		return d, nil
	case isNumber(rv):
		// A bare number has no unit; zero is the only unambiguous one.
		if n, err := toFloat(rv); err == nil && n == 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("cannot parse %s as duration: missing unit (use Go syntax such as \"90s\" or \"1m30s\")", describeValue(raw))
	}
	return 0, fmt.Errorf("cannot parse %s as duration", describeValue(raw))
}

func toInt(rv reflect.Value) (int64, error) {
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if rv.Uint() > math.MaxInt64 {
			return 0, strconv.ErrRange
		}
		return int64(rv.Uint()), nil // #nosec G115 -- checked against MaxInt64 above
	case reflect.Float32, reflect.Float64:
		f := rv.Float()
		if f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
			return 0, strconv.ErrSyntax
		}
		return int64(f), nil
	case reflect.String:
		return strconv.ParseInt(strings.TrimSpace(rv.String()), 10, 64)
	}
	return 0, strconv.ErrSyntax
}

func toUint(rv reflect.Value) (uint64, error) {
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if rv.Int() < 0 {
			return 0, strconv.ErrRange
		}
		return uint64(rv.Int()), nil // #nosec G115 -- checked non-negative above
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return rv.Uint(), nil
	case reflect.Float32, reflect.Float64:
		f := rv.Float()
		if f != math.Trunc(f) || f < 0 || f >= math.MaxUint64 {
			return 0, strconv.ErrSyntax
		}
		return uint64(f), nil
	case reflect.String:
		return strconv.ParseUint(strings.TrimSpace(rv.String()), 10, 64)
	}
	return 0, strconv.ErrSyntax
}

func toFloat(rv reflect.Value) (float64, error) {
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(rv.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(rv.Uint()), nil
	case reflect.Float32, reflect.Float64:
		return rv.Float(), nil
	case reflect.String:
		return strconv.ParseFloat(strings.TrimSpace(rv.String()), 64)
	}
	return 0, strconv.ErrSyntax
}

// toStrings accepts a list (from YAML or a flag) or a comma-separated
// string (from the environment). Surrounding spaces are trimmed and empty
// items dropped, so "a, b," and "" behave as people expect.
func toStrings(rv reflect.Value) ([]string, error) {
	var items []string
	switch rv.Kind() {
	case reflect.String:
		items = strings.Split(rv.String(), ",")
	case reflect.Slice, reflect.Array:
		for i := range rv.Len() {
			e := rv.Index(i)
			if e.Kind() == reflect.Interface {
				e = e.Elem()
			}
			if !isScalar(e) {
				return nil, strconv.ErrSyntax
			}
			items = append(items, fmt.Sprint(e.Interface()))
		}
	default:
		return nil, strconv.ErrSyntax
	}
	out := make([]string, 0, len(items))
	for _, s := range items {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

func isNumber(rv reflect.Value) bool {
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

func isScalar(rv reflect.Value) bool {
	return rv.IsValid() && (rv.Kind() == reflect.String || rv.Kind() == reflect.Bool || isNumber(rv))
}

func cannotParse(raw any, t reflect.Type) error {
	return fmt.Errorf("cannot parse %s as %s", describeValue(raw), typeName(t))
}

// describeValue renders a raw value for an error message: strings quoted,
// numbers and booleans as typed, and compound values by shape only.
func describeValue(raw any) string {
	rv := reflect.ValueOf(raw)
	switch {
	case !rv.IsValid():
		return "null"
	case rv.Kind() == reflect.String:
		return strconv.Quote(rv.String())
	case isScalar(rv):
		return fmt.Sprint(raw)
	case rv.Kind() == reflect.Map:
		return "a mapping"
	case rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array:
		return "a list"
	}
	return fmt.Sprintf("a %T", raw)
}

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.Slice:
		return "list of strings"
	}
	return t.Kind().String()
}

// format renders a default value the way a user would type it.
func format(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.Slice:
		return strings.Join(stringSlice(v), ",")
	case v.Kind() == reflect.String:
		return v.String()
	}
	return fmt.Sprint(v.Interface())
}

func stringSlice(v reflect.Value) []string {
	out := make([]string, v.Len())
	for i := range out {
		out[i] = v.Index(i).String()
	}
	return out
}
