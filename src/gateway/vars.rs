//! [`MetaVars`]: a script's environment as one buffer of `NAME=VALUE\0` entries, in
//! order. A request's thirty-odd variables cost two allocations instead of two each,
//! execve(2) takes the entries as they are, and FastCGI PARAMS are encoded from them.

/// Names and values in one block; see the module doc.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaVars {
    /// `NAME=VALUE\0` for each variable.
    block: Vec<u8>,
    /// Where each entry starts, and where its `=` is.
    vars: Vec<(usize, usize)>,
}

impl MetaVars {
    pub fn new() -> MetaVars {
        MetaVars::default()
    }

    /// Room for `vars` variables of `bytes` bytes in all.
    pub fn with_capacity(vars: usize, bytes: usize) -> MetaVars {
        MetaVars {
            block: Vec::with_capacity(bytes),
            vars: Vec::with_capacity(vars),
        }
    }

    /// Adds `name` with `value` at the end, without looking for an earlier one.
    pub fn push(&mut self, name: &str, value: &[u8]) {
        self.push_with(name, |b| b.extend_from_slice(value));
    }

    /// Adds `name` with the value `value` writes into the block: a number or an address
    /// goes in without a string of its own.
    pub fn push_with(&mut self, name: &str, value: impl FnOnce(&mut Vec<u8>)) {
        self.push_named(|b| b.extend_from_slice(name.as_bytes()), value);
    }

    /// Adds a variable whose name `name` writes too (ASCII: `HTTP_*` from a header).
    pub fn push_named(
        &mut self,
        name: impl FnOnce(&mut Vec<u8>),
        value: impl FnOnce(&mut Vec<u8>),
    ) {
        let start = self.block.len();
        name(&mut self.block);
        let eq = self.block.len();
        self.block.push(b'=');
        value(&mut self.block);
        self.block.push(0);
        self.vars.push((start, eq));
    }

    /// Sets `name` to `value`: in its place if it is there, else at the end.
    pub fn set(&mut self, name: &str, value: &[u8]) {
        match self.position(name.as_bytes()) {
            Some(i) => {
                let (from, to) = self.value_span(i);
                self.splice(i, from..to, value);
            }
            None => self.push(name, value),
        }
    }

    /// Removes `name` wherever it is.
    pub fn remove(&mut self, name: &str) {
        while let Some(i) = self.position(name.as_bytes()) {
            let start = self.vars[i].0;
            let end = self.entry_end(i);
            self.splice(i, start..end, &[]);
            self.vars.remove(i);
        }
    }

    /// Appends `joiner` and `more` to the value of variable `i` (a repeated header).
    pub fn extend_value(&mut self, i: usize, joiner: &[u8], more: &[u8]) {
        let (_, to) = self.value_span(i);
        self.splice(i, to..to, &[joiner, more].concat());
    }

    /// Which variable, from the `from`th on, is called `name`.
    pub fn position_from(&self, from: usize, name: &[u8]) -> Option<usize> {
        self.position_where(from, |n| n == name)
    }

    /// Which variable, from the `from`th on, has a name `is_it` takes.
    pub fn position_where(&self, from: usize, is_it: impl Fn(&[u8]) -> bool) -> Option<usize> {
        (from..self.vars.len()).find(|&i| is_it(self.name_bytes(i)))
    }

    fn position(&self, name: &[u8]) -> Option<usize> {
        self.position_from(0, name)
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let i = self.position(name.as_bytes())?;
        let (from, to) = self.value_span(i);
        Some(&self.block[from..to])
    }

    pub fn len(&self) -> usize {
        self.vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// (name, value) in order. Names are ASCII (ours, `--env`'s or a header's).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        (0..self.vars.len()).map(|i| {
            let (from, to) = self.value_span(i);
            let name = std::str::from_utf8(self.name_bytes(i)).unwrap_or_default();
            (name, &self.block[from..to])
        })
    }

    /// Each `NAME=VALUE\0`, as execve(2) wants them.
    pub fn entries(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.vars.len()).map(|i| &self.block[self.vars[i].0..self.entry_end(i)])
    }

    fn name_bytes(&self, i: usize) -> &[u8] {
        let (start, eq) = self.vars[i];
        &self.block[start..eq]
    }

    /// The value's bytes: after the `=`, before the NUL.
    fn value_span(&self, i: usize) -> (usize, usize) {
        (self.vars[i].1 + 1, self.entry_end(i) - 1)
    }

    fn entry_end(&self, i: usize) -> usize {
        self.vars.get(i + 1).map_or(self.block.len(), |v| v.0)
    }

    /// Replaces `range` (inside variable `i`'s entry) with `with`, moving the entries
    /// after `i`.
    fn splice(&mut self, i: usize, range: std::ops::Range<usize>, with: &[u8]) {
        let grown = with.len() as isize - range.len() as isize;
        self.block.splice(range, with.iter().copied());
        for v in &mut self.vars[i + 1..] {
            v.0 = v.0.wrapping_add_signed(grown);
            v.1 = v.1.wrapping_add_signed(grown);
        }
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> FromIterator<(N, V)> for MetaVars {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> MetaVars {
        let mut vars = MetaVars::new();
        for (name, value) in pairs {
            vars.push(name.as_ref(), value.as_ref());
        }
        vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> MetaVars {
        [("A", "1"), ("BB", "two"), ("C", "")].into_iter().collect()
    }

    #[test]
    fn entries_are_execve_strings() {
        let v = vars();
        let e: Vec<&[u8]> = v.entries().collect();
        assert_eq!(e, [&b"A=1\0"[..], b"BB=two\0", b"C=\0"]);
        assert_eq!(v.get("BB"), Some(&b"two"[..]));
        assert_eq!(v.get("B"), None);
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn set_replaces_in_place_and_later_entries_follow() {
        let mut v = vars();
        v.set("A", b"longer");
        v.set("D", b"4");
        let got: Vec<(&str, &[u8])> = v.iter().collect();
        assert_eq!(
            got,
            [
                ("A", &b"longer"[..]),
                ("BB", b"two"),
                ("C", b""),
                ("D", b"4")
            ]
        );
        v.set("A", b"");
        assert_eq!(v.get("BB"), Some(&b"two"[..]));
        assert_eq!(v.entries().next(), Some(&b"A=\0"[..]));
    }

    #[test]
    fn extend_and_remove() {
        let mut v = vars();
        v.extend_value(1, b", ", b"three");
        assert_eq!(v.get("BB"), Some(&b"two, three"[..]));
        assert_eq!(v.get("C"), Some(&b""[..]));
        v.push("A", b"again");
        v.remove("A");
        let names: Vec<&str> = v.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["BB", "C"]);
        assert_eq!(
            v.entries().collect::<Vec<_>>(),
            [&b"BB=two, three\0"[..], b"C=\0"]
        );
        assert_eq!(v.position_from(1, b"BB"), None);
        assert_eq!(v.position_from(0, b"C"), Some(1));
    }
}
