package pgsql

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/portcullis/portcullis/policy"
)

// readOnlyFunctions are built-in functions PostgreSQL marks immutable or stable, so that
// calling them cannot change data, and the few volatile ones client tools call that only
// read (pg_dump asks pg_is_in_recovery). Other functions are decided on what the upstream
// declares (ClassifyWith), or else as writes, because a volatile function may write.
var readOnlyFunctions = set(
	// aggregates and window functions
	"count", "sum", "avg", "min", "max", "array_agg", "string_agg", "json_agg", "jsonb_agg",
	"json_object_agg", "jsonb_object_agg", "bool_and", "bool_or", "every", "bit_and", "bit_or",
	"stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "percentile_cont",
	"percentile_disc", "mode", "row_number", "rank", "dense_rank", "percent_rank", "cume_dist",
	"ntile", "lag", "lead", "first_value", "last_value", "nth_value",
	// strings
	"lower", "upper", "initcap", "length", "char_length", "character_length", "octet_length",
	"substr", "substring", "trim", "btrim", "ltrim", "rtrim", "replace", "concat", "concat_ws",
	"format", "left", "right", "lpad", "rpad", "position", "strpos", "split_part", "reverse",
	"repeat", "starts_with", "regexp_replace", "regexp_match", "regexp_matches", "regexp_split_to_array",
	"regexp_split_to_table", "translate", "md5", "sha256", "sha512", "encode", "decode", "quote_ident",
	"quote_literal", "quote_nullable", "to_hex", "ascii", "chr", "string_to_array", "array_to_string",
	// dates and numbers
	"now", "current_timestamp", "transaction_timestamp", "statement_timestamp", "date_trunc",
	"date_part", "date_bin", "extract", "age", "make_date", "make_time", "make_timestamp",
	"make_timestamptz", "make_interval", "to_char", "to_date", "to_timestamp", "to_number",
	"justify_days", "justify_hours", "justify_interval", "isfinite", "abs", "round", "ceil",
	"ceiling", "floor", "trunc", "mod", "power", "pow", "sqrt", "cbrt", "exp", "ln", "log", "sign",
	"div", "width_bucket", "greatest", "least",
	// json, arrays, ranges, misc
	"json_build_object", "jsonb_build_object", "json_build_array", "jsonb_build_array", "to_json",
	"to_jsonb", "row_to_json", "jsonb_set", "jsonb_insert", "jsonb_strip_nulls", "jsonb_pretty",
	"json_extract_path", "jsonb_extract_path", "json_extract_path_text", "jsonb_extract_path_text",
	"jsonb_array_elements", "json_array_elements", "jsonb_array_elements_text", "jsonb_each",
	"json_each", "jsonb_each_text", "jsonb_object_keys", "json_object_keys", "jsonb_typeof",
	"jsonb_array_length", "json_array_length", "jsonb_path_query", "jsonb_path_exists",
	"array_length", "array_position", "array_positions", "array_remove", "array_append",
	"array_prepend", "array_cat", "cardinality", "unnest", "generate_series", "generate_subscripts",
	"lower_inf", "upper_inf", "isempty", "range_merge", "coalesce", "nullif", "pg_typeof",
	"version", "current_setting", "current_database", "current_schema", "current_user",
	"session_user", "has_table_privilege", "has_schema_privilege", "pg_size_pretty",
	"pg_relation_size", "pg_total_relation_size", "pg_table_size", "pg_indexes_size",
	"pg_database_size", "pg_get_viewdef", "pg_get_indexdef", "pg_get_constraintdef",
	"format_type", "obj_description", "col_description", "to_regclass", "uuid_in", "gen_random_uuid",
	// volatile, reading only
	"pg_is_in_recovery", "random", "clock_timestamp", "timeofday", "pg_current_wal_lsn",
	"pg_last_wal_receive_lsn", "pg_last_wal_replay_lsn", "pg_export_snapshot",
)

// adminFunctions act on the server, other sessions or its files.
var adminFunctions = set("pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf",
	"pg_rotate_logfile", "set_config", "pg_read_file", "pg_read_binary_file", "pg_ls_dir",
	"pg_stat_file", "lo_import", "lo_export", "pg_promote", "pg_switch_wal", "pg_create_restore_point",
	"pg_backup_start", "pg_backup_stop", "pg_start_backup", "pg_stop_backup", "dblink", "dblink_exec",
	"dblink_connect", "pg_file_write", "pg_logical_emit_message", "pg_create_logical_replication_slot",
	"pg_create_physical_replication_slot", "pg_drop_replication_slot", "pg_stat_reset", "pg_sleep")

// accessShareLock is LOCK's ACCESS SHARE mode (lockdefs.h's AccessShareLock).
const accessShareLock = 1

// functionClass returns what a call can do: from Portcullis's own lists, else from what
// the server declares (c.known), else a write.
func (c *collector) functionClass(name string, call *pg.FuncCall) policy.Class {
	switch {
	case readOnlyFunctions[name]:
		return policy.ClassRead
	case name == "set_config" && c.harmlessSetting(call):
		return policy.ClassRead // as SET of the same setting is
	case adminFunctions[name]:
		return policy.ClassAdmin
	}
	if c.known != nil {
		if class, ok := c.known(name); ok {
			return class
		}
	}
	// nextval and friends write; a volatile or unknown function may write.
	return policy.ClassWrite
}

// harmlessSetting reports whether a set_config call names, as a constant, a setting that
// SET may change as a read: anything but the role and the session authorization
// (pg_dump empties search_path so, for one).
// A name read from pg_settings counts when the query keeps to one constant name, as
// pg_dump's SELECT set_config(name, ...) FROM pg_settings WHERE name = '...' does.
func (c *collector) harmlessSetting(call *pg.FuncCall) bool {
	if len(call.Args) == 0 {
		return false
	}
	var name string
	if s, ok := call.Args[0].GetAConst().GetVal().(*pg.A_Const_Sval); ok && s.Sval != nil {
		name = s.Sval.Sval
	} else if columnName(call.Args[0]) == "name" {
		name = c.setting
	}
	switch strings.ToLower(name) {
	case "role", "session_authorization", "":
		return false
	}
	return true
}

// UnknownFunctions returns the functions act calls that Portcullis does not classify
// itself: each makes the statement a write unless ClassifyWith is told better.
func UnknownFunctions(act *policy.Action) []string {
	var out []string
	for _, f := range act.Functions {
		if !readOnlyFunctions[f] && !adminFunctions[f] && f != "set_config" {
			out = append(out, f)
		}
	}
	return out
}

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// settingsQuery returns the one setting name a SELECT reads from pg_settings alone with
// WHERE name = '<constant>', or "".
func settingsQuery(s *pg.SelectStmt) string {
	if len(s.FromClause) != 1 {
		return ""
	}
	rv := s.FromClause[0].GetRangeVar()
	if rv == nil || rv.Relname != "pg_settings" || rv.Schemaname != "" && rv.Schemaname != "pg_catalog" {
		return ""
	}
	e := s.WhereClause.GetAExpr()
	if e == nil || e.Kind != pg.A_Expr_Kind_AEXPR_OP || len(e.Name) != 1 || e.Name[0].GetString_().GetSval() != "=" || columnName(e.Lexpr) != "name" {
		return ""
	}
	if v, ok := e.Rexpr.GetAConst().GetVal().(*pg.A_Const_Sval); ok && v.Sval != nil {
		return v.Sval.Sval
	}
	return ""
}

// columnName returns the name of an unqualified column reference, or "".
func columnName(n *pg.Node) string {
	cr := n.GetColumnRef()
	if cr == nil || len(cr.Fields) != 1 {
		return ""
	}
	return cr.Fields[0].GetString_().GetSval()
}
