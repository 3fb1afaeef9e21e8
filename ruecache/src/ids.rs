//! The types a batch `#[cached_batch]` method may take its ids as.

/// The ids parameter of a batch [`#[cached_batch]`](crate::cached_batch) method: `Vec<Id>` (or an
/// alias of it), `Id` being the key type of the map the method returns. The method's body gets
/// the missing ids in the same type.
///
/// The id is a parameter of the trait, not an associated type, so that ids of another type than
/// the map's keys are reported with this trait's message too.
///
/// # Examples
///
/// ```
/// use ruecache::IdList;
///
/// let ids = vec![7u64, 8];
/// assert_eq!(IdList::<u64>::into_ids(ids.clone()), ids);
/// assert_eq!(<Vec<u64> as IdList<u64>>::from_ids(vec![8]), vec![8]);
/// ```
#[diagnostic::on_unimplemented(
    message = "the ids parameter of a batch `#[cached_batch]` method must be a `Vec` of the map's key type `{Id}`, not `{Self}`",
    label = "expected `Vec<{Id}>`",
    note = "the ids and the keys of the returned map are the same type: a batch method takes `ids: Vec<Id>` and returns `Result<HashMap<Id, T>, E>`; a single-item method takes `id: Id` and returns `Result<Option<T>, E>`"
)]
pub trait IdList<Id>: Sized {
    /// The ids to look up.
    fn into_ids(self) -> Vec<Id>;
    /// The missing ids, handed to the method's body.
    fn from_ids(ids: Vec<Id>) -> Self;
}

impl<Id> IdList<Id> for Vec<Id> {
    fn into_ids(self) -> Self {
        self
    }
    fn from_ids(ids: Self) -> Self {
        ids
    }
}
