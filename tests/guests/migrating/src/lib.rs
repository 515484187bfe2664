//! A class whose migrations grow between versions, for the migration tests.
//! Built three times: v1 creates `items`; `v2` adds a column; `broken` adds
//! a migration that fails.

use podhost_sdk::{Method, Object, Request, Response, Result, sql};

const CREATE_ITEMS: &str = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)";

#[cfg(not(any(feature = "v2", feature = "broken")))]
const MIGRATIONS: &[&str] = &[CREATE_ITEMS];
#[cfg(all(feature = "v2", not(feature = "broken")))]
const MIGRATIONS: &[&str] = &[
    CREATE_ITEMS,
    "ALTER TABLE items ADD COLUMN tag TEXT NOT NULL DEFAULT 'none'",
];
#[cfg(feature = "broken")]
const MIGRATIONS: &[&str] = &[CREATE_ITEMS, "ALTER TABLE missing ADD COLUMN tag TEXT"];

struct Items;

impl Object for Items {
    const MIGRATIONS: &'static [&'static str] = MIGRATIONS;

    fn activate() -> Result<Self> {
        Ok(Items)
    }

    /// `POST` adds an item named by the body; every request returns all
    /// items with all their columns.
    fn fetch(&mut self, req: Request) -> Result<Response> {
        if req.method() == Method::POST {
            sql::execute("INSERT INTO items (name) VALUES (?)", (req.text()?,))?;
        }
        let rows = sql::exec("SELECT * FROM items ORDER BY id", ())?;
        let items: Vec<_> = rows.iter().map(|row| row.to_json()).collect();
        Ok(Response::json(&items))
    }
}

podhost_sdk::export!(Items);
