// The single-item form: one id in, `Result<Option<T>, E>` out; `None` means the source does not
// have the id (and that is cached too).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
}

#[derive(Debug)]
pub enum AppError {
    Cache(ruecache::Error),
    NotAllowed,
}

impl From<ruecache::Error> for AppError {
    fn from(error: ruecache::Error) -> Self {
        Self::Cache(error)
    }
}

pub struct Users {
    redis: ruecache::Connection,
}

impl ruecache::HasConnection for Users {
    fn cache_connection(&self) -> &ruecache::Connection {
        &self.redis
    }
}

impl Users {
    async fn lookup(&self, id: u64) -> Result<Option<User>, AppError> {
        if id == 0 {
            return Err(AppError::NotAllowed);
        }
        Ok(Some(User { name: id.to_string() }))
    }

    /// One user.
    #[ruecache::cached_batch(key = "users:<<<id>>>", ttl = "10m")]
    pub async fn user(&self, user_id: u64) -> Result<Option<User>, AppError> {
        let user = self.lookup(user_id).await?;
        match user {
            Some(user) => Ok(Some(user)),
            None => return Ok(None),
        }
    }
}

#[allow(dead_code)]
async fn call(users: &Users) -> Result<Option<String>, AppError> {
    Ok(users.user(7).await?.map(|user| user.name))
}

fn main() {}
