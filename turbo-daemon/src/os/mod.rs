pub mod creds;
pub mod users;
