//! Where each setting comes from: the command line, the environment, a
//! `.env` file and a TOML configuration file, in that order of precedence,
//! over the defaults.
//!
//! Generic over a clap [`Command`]: every argument with a long name gets a
//! file key of that name (`--max-startups` is `max-startups`) and an
//! environment variable `GITMOUTH_<NAME>` (`GITMOUTH_MAX_STARTUPS`), with no
//! code of its own. A value from a file or a variable goes through the same
//! clap value parser as one on the command line, so validation is shared,
//! and a refusal names the setting, where the value came from, the value
//! and what is allowed. Pure: the caller hands in the arguments, the
//! variables and the file's text.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// Arguments that are commands or meta-options rather than settings: no
/// file key, no variable.
const NOT_SETTINGS: [&str; 3] = ["help", "version", "print-config"];

/// Settings that the configuration file cannot hold (it is how the file is
/// found).
const NOT_IN_FILE: [&str; 1] = ["config"];

/// Where one setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Nothing set it: the built-in default.
    Default,
    /// The command line.
    CommandLine,
    /// A variable of the process environment.
    Environment(String),
    /// A variable in `./.env`, with its line when known.
    DotEnv {
        /// The variable.
        var: String,
        /// Its line in `.env` (1-based).
        line: Option<usize>,
    },
    /// A key in the configuration file.
    File {
        /// The file, as named.
        path: PathBuf,
        /// The key's line (1-based).
        line: usize,
    },
}

impl Source {
    /// Whether something other than the default set the value.
    pub fn is_explicit(&self) -> bool {
        *self != Source::Default
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::CommandLine => f.write_str("the command line"),
            Source::Environment(var) => write!(f, "the environment ({var})"),
            Source::DotEnv {
                var,
                line: Some(line),
            } => write!(f, "./.env line {line} ({var})"),
            Source::DotEnv { var, line: None } => write!(f, "./.env ({var})"),
            Source::File { path, line } => write!(f, "{} line {line}", path.display()),
        }
    }
}

/// Variables visible to the server: the process environment over a `.env`
/// file (a variable already in the environment wins, as the original's
/// foreman setup behaved), each remembering which it came from.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Env {
    process: BTreeMap<String, String>,
    dotenv: BTreeMap<String, (String, Option<usize>)>,
}

impl fmt::Debug for Env {
    // Values may be secrets (APISERVER_KEY): only names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("process", &self.process.keys().collect::<Vec<_>>())
            .field("dotenv", &self.dotenv.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Env {
    /// The process environment over the text of a `.env` file. A `.env`
    /// that does not parse is an error: starting without what it says
    /// (API mode's key, the host key) would start a different server.
    pub fn new(
        process: impl IntoIterator<Item = (String, String)>,
        dotenv: Option<&str>,
    ) -> Result<Self, String> {
        let mut parsed = BTreeMap::new();
        if let Some(text) = dotenv {
            for item in dotenvy::from_read_iter(text.as_bytes()) {
                let (k, v) = item.map_err(|e| format!("./.env does not parse: {e}"))?;
                let line = dotenv_line(text, &k);
                parsed.insert(k, (v, line));
            }
        }
        Ok(Self {
            process: process.into_iter().collect(),
            dotenv: parsed,
        })
    }

    /// A variable's value, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.process
            .get(name)
            .map(String::as_str)
            .or_else(|| self.dotenv.get(name).map(|(v, _)| v.as_str()))
    }

    /// A variable's value if set and not empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// A variable's non-empty value and where it came from.
    pub fn lookup(&self, name: &str) -> Option<(&str, Source)> {
        self.lookup_process(name)
            .or_else(|| self.lookup_dotenv(name))
    }

    /// Names of the variables, in the environment and in `.env`, that
    /// start with `prefix`, each with where it is set.
    fn with_prefix(&self, prefix: &str) -> Vec<(String, Source)> {
        let mut out: Vec<(String, Source)> = self
            .process
            .keys()
            .filter(|k| k.starts_with(prefix))
            .map(|k| (k.clone(), Source::Environment(k.clone())))
            .collect();
        for (k, (_, line)) in &self.dotenv {
            if k.starts_with(prefix) && !self.process.contains_key(k) {
                out.push((
                    k.clone(),
                    Source::DotEnv {
                        var: k.clone(),
                        line: *line,
                    },
                ));
            }
        }
        out
    }

    fn lookup_process(&self, name: &str) -> Option<(&str, Source)> {
        self.process
            .get(name)
            .filter(|v| !v.is_empty())
            .map(|v| (v.as_str(), Source::Environment(name.to_owned())))
    }

    fn lookup_dotenv(&self, name: &str) -> Option<(&str, Source)> {
        self.dotenv
            .get(name)
            .filter(|(v, _)| !v.is_empty())
            .map(|(v, line)| {
                (
                    v.as_str(),
                    Source::DotEnv {
                        var: name.to_owned(),
                        line: *line,
                    },
                )
            })
    }
}

/// The last line of a `.env` text that assigns `name` (the one dotenv
/// keeps).
fn dotenv_line(text: &str, name: &str) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim_start();
            let l = l.strip_prefix("export ").unwrap_or(l).trim_start();
            l.strip_prefix(name)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|(i, _)| i + 1)
        .last()
}

/// The environment variable of the setting `--long`: `GITMOUTH_LONG`, upper
/// case, dashes as underscores.
pub fn variable(long: &str) -> String {
    format!("GITMOUTH_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// A variable from before this configuration scheme that sets a setting
/// too (Openruko's `GITMOUTH_PORT`, tracing's `RUST_LOG`): looked at after
/// the setting's own `GITMOUTH_<NAME>`, in the same layer.
pub struct Alias {
    /// The setting's long name.
    pub long: &'static str,
    /// The variable.
    pub var: &'static str,
    /// Its value as the setting's values (`GITMOUTH_PORT=2022` is
    /// `--listen 0.0.0.0:2022`), or why it is wrong.
    pub convert: fn(&str) -> Result<Vec<String>, String>,
}

/// Variables with the settings' prefix that name no setting and are no
/// alias, but are known all the same (the original's, which we derive).
const KNOWN_UNUSED: [&str; 1] = ["GITMOUTH_PUBLIC_KEY"];

/// Refuses a `GITMOUTH_*` variable that names no setting: a misspelt one
/// would otherwise be ignored without a word.
fn check_variables(cmd: &Command, env: &Env, aliases: &[Alias]) -> Result<(), String> {
    let known: Vec<String> = cmd
        .get_arguments()
        .filter(|a| is_setting(a))
        .filter_map(Arg::get_long)
        .map(variable)
        .chain(aliases.iter().map(|a| a.var.to_owned()))
        .chain(KNOWN_UNUSED.iter().map(|v| (*v).to_owned()))
        .collect();
    for (name, source) in env.with_prefix("GITMOUTH_") {
        if known.contains(&name) {
            continue;
        }
        let near = known
            .iter()
            .filter(|k| k.starts_with("GITMOUTH_"))
            .min_by_key(|k| edit_distance(k, &name))
            .filter(|k| edit_distance(k, &name) <= 3)
            .map(|k| format!(" (did you mean {k}?)"))
            .unwrap_or_default();
        return Err(format!(
            "{name} in {source}: no option of that name{near}; each option's variable is in --help"
        ));
    }
    Ok(())
}

/// Levenshtein distance, for suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// A setting's effective value(s) and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The long name (the file key).
    pub long: String,
    /// The values, as text (several for a list).
    pub values: Vec<String>,
    /// Whether it takes a list.
    pub list: bool,
    /// Where they came from.
    pub source: Source,
}

/// The command line completed from the other layers.
#[derive(Debug)]
pub struct Layered {
    /// What clap made of it.
    pub matches: ArgMatches,
    /// Every setting that has a value, in the command's order.
    pub origins: Vec<Origin>,
}

impl Layered {
    /// Where the setting `long` came from, if it has a value.
    pub fn source(&self, long: &str) -> Option<&Source> {
        self.origins
            .iter()
            .find(|o| o.long == long)
            .map(|o| &o.source)
    }
}

/// The configuration file's text and name.
#[derive(Debug, Clone, Copy)]
pub struct FileText<'a> {
    /// Where it was read from (for messages).
    pub path: &'a Path,
    /// Its contents.
    pub text: &'a str,
}

/// Whether `arg` is a setting with a file key and a variable.
fn is_setting(arg: &Arg) -> bool {
    arg.get_long().is_some_and(|l| !NOT_SETTINGS.contains(&l))
}

/// The keys a configuration file may hold, in the command's order: every
/// setting's long name but the file's own (`config`). The example file
/// (`contrib/gitmouth.toml`) is checked against this list.
pub fn file_keys(cmd: &Command) -> Vec<&str> {
    cmd.get_arguments()
        .filter(|a| is_setting(a))
        .filter_map(Arg::get_long)
        .filter(|long| !NOT_IN_FILE.contains(long))
        .collect()
}

/// Whether `arg` takes a list (repeatable).
fn is_list(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

/// A value from the configuration file and its line.
struct FileValue {
    value: toml::Value,
    line: usize,
}

/// Parses the file into its keys, refusing what no setting takes.
fn read_file(cmd: &Command, file: FileText<'_>) -> Result<BTreeMap<String, FileValue>, String> {
    let name = file.path.display();
    let table: BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>> =
        toml::from_str(file.text).map_err(|e| format!("{name} is not valid TOML: {e}"))?;
    let line_of = |offset: usize| {
        file.text
            .get(..offset)
            .map_or(1, |before| before.matches('\n').count() + 1)
    };
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let line = line_of(key.span().start);
        let key = key.into_inner();
        if !file_keys(cmd).contains(&key.as_str()) {
            let known = cmd
                .get_arguments()
                .any(|a| is_setting(a) && a.get_long() == Some(key.as_str()));
            let hint = cmd
                .get_arguments()
                .filter(|a| is_setting(a))
                .filter_map(Arg::get_long)
                .find(|l| *l == key.replace('_', "-"))
                .map(|l| format!(" (did you mean {l:?}?)"))
                .unwrap_or_default();
            let why = if known {
                "the file cannot name itself; use --config or GITMOUTH_CONFIG".to_owned()
            } else {
                format!("a key is a setting's long name, as in --help{hint}")
            };
            return Err(format!("{name} line {line}: unknown key {key:?}: {why}"));
        }
        out.insert(
            key,
            FileValue {
                value: value.into_inner(),
                line,
            },
        );
    }
    Ok(out)
}

/// A file value as the setting's values.
fn file_values(value: &toml::Value, list: bool) -> Result<Vec<String>, String> {
    use toml::Value;
    let scalar = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Boolean(b) => Ok(if *b { "yes" } else { "no" }.to_owned()),
        other => Err(format!(
            "expected a string, a whole number or yes/no, not a {}",
            other.type_str()
        )),
    };
    match value {
        Value::Array(items) if list => items.iter().map(scalar).collect(),
        Value::Array(_) => Err("expected one value, not a list".into()),
        Value::String(s) if list => Ok(split_list(s)),
        v => scalar(v).map(|s| vec![s]),
    }
}

/// A comma-separated list, as lists are written in variables.
fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Why clap refused a value, without clap's framing.
fn reason(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        return format!("expected one of: {}", valid.join(", "));
    }
    if let Some(source) = std::error::Error::source(e) {
        return source.to_string();
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// Completes the command line `args` (program name first) from `env` and
/// `file`: each setting not on the command line takes its value from the
/// first of its `GITMOUTH_<NAME>` variable (then its `aliases`) in the
/// process environment, the same in `.env`, the file's key, the default.
/// Errors from the command line itself are clap's (help and version
/// included); a bad value from another layer is a message naming it.
pub fn layer(
    cmd: &Command,
    args: Vec<OsString>,
    env: &Env,
    file: Option<FileText<'_>>,
    aliases: &[Alias],
) -> Result<Layered, LayerError> {
    let mut cmd = cmd.clone();
    cmd.build();
    let given = cmd
        .clone()
        .try_get_matches_from(args.clone())
        .map_err(LayerError::Clap)?;
    check_variables(&cmd, env, aliases).map_err(LayerError::Message)?;
    let file_values_by_key = match file {
        Some(f) => read_file(&cmd, f).map_err(LayerError::Message)?,
        None => BTreeMap::new(),
    };
    let mut extra: Vec<OsString> = Vec::new();
    let mut sources: BTreeMap<String, Source> = BTreeMap::new();
    let mut settings: Vec<(String, String, bool)> = Vec::new();
    for arg in cmd.get_arguments().filter(|a| is_setting(a)) {
        let Some(long) = arg.get_long() else { continue };
        let id = arg.get_id().as_str();
        settings.push((long.to_owned(), id.to_owned(), is_list(arg)));
        if given.value_source(id) == Some(ValueSource::CommandLine) {
            sources.insert(long.to_owned(), Source::CommandLine);
            continue;
        }
        let list = is_list(arg);
        let own = variable(long);
        let mut found: Option<(Vec<String>, Source)> = None;
        // Process environment first, then .env; in each, the setting's own
        // variable before its aliases.
        for dotenv in [false, true] {
            let look = |name: &str| {
                if dotenv {
                    env.lookup_dotenv(name)
                } else {
                    env.lookup_process(name)
                }
            };
            if let Some((value, source)) = look(&own) {
                let values = if list {
                    split_list(value)
                } else {
                    vec![value.to_owned()]
                };
                found = Some((values, source));
                break;
            }
            for alias in aliases.iter().filter(|a| a.long == long) {
                if let Some((value, source)) = look(alias.var) {
                    let values = (alias.convert)(value).map_err(|why| {
                        LayerError::Message(format!(
                            "--{long} from {source}: invalid value {value:?}: {why}"
                        ))
                    })?;
                    found = Some((values, source));
                    break;
                }
            }
            if found.is_some() {
                break;
            }
        }
        if found.is_none()
            && let Some(fv) = file_values_by_key.get(long)
        {
            let source = Source::File {
                path: file.map(|f| f.path.to_path_buf()).unwrap_or_default(),
                line: fv.line,
            };
            let values = file_values(&fv.value, list)
                .map_err(|why| LayerError::Message(format!("--{long} from {source}: {why}")))?;
            found = Some((values, source));
        }
        let Some((values, source)) = found else {
            if given.value_source(id) == Some(ValueSource::DefaultValue) {
                sources.insert(long.to_owned(), Source::Default);
            }
            continue;
        };
        if values.is_empty() {
            return Err(LayerError::Message(format!(
                "--{long} from {source}: an empty list"
            )));
        }
        for value in &values {
            // The same parser as on the command line: the same checks.
            let alone: [OsString; 2] = [cmd.get_name().into(), format!("--{long}={value}").into()];
            cmd.clone().try_get_matches_from(alone).map_err(|e| {
                LayerError::Message(format!(
                    "--{long} from {source}: invalid value {value:?}: {}",
                    reason(&e)
                ))
            })?;
            extra.push(format!("--{long}={value}").into());
        }
        sources.insert(long.to_owned(), source);
    }
    let mut all = args;
    all.extend(extra);
    let matches = cmd.try_get_matches_from(all).map_err(LayerError::Clap)?;
    let origins = settings
        .into_iter()
        .filter_map(|(long, id, list)| {
            let source = sources.remove(&long)?;
            let values = matches
                .get_raw(&id)?
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            Some(Origin {
                long,
                values,
                list,
                source,
            })
        })
        .collect();
    Ok(Layered { matches, origins })
}

/// Why [`layer`] refused.
#[derive(Debug)]
pub enum LayerError {
    /// Clap's own (the command line, help, version).
    Clap(clap::Error),
    /// A bad value or key from another layer: the whole message.
    Message(String),
}
