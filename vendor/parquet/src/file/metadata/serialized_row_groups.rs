// pcaplab's patch (the seventh, see PATCHED.md): this file is new.

//! Row groups' metadata kept thrift-encoded once each row group is closed.
//!
//! [`SerializedFileWriter`](crate::file::writer::SerializedFileWriter) holds every closed row
//! group's [`RowGroupMetaData`] until the footer is written: about 700 bytes a column chunk
//! with the index slots kept beside it, where the footer's thrift encoding of the same chunk
//! takes about 90. A file of many row groups (a flood's flow table: one every 16 Ki flows) then
//! holds memory in proportion to its rows. Kept encoded, the row groups take what the footer
//! will, and are written into it as they are.

use std::io::Write;

use crate::errors::Result;
use crate::file::metadata::RowGroupMetaData;
use crate::file::metadata::writer::clear_page_index_locations;
use crate::parquet_thrift::{ElementType, FieldType, ThriftCompactOutputProtocol};

/// The `RowGroup` structs of a file's closed row groups, each encoded up to its `ordinal`
/// ([`RowGroupMetaData::write_thrift_before_ordinal`]): whether ordinals are written depends on
/// how many row groups the file ends with, so the rest of each struct is written with the
/// footer ([`SerializedRowGroups::write_field`]).
#[derive(Debug)]
pub(crate) struct SerializedRowGroups {
    bytes: Vec<u8>,
    /// Per row group: where its bytes end in `bytes`, the id of its last field written, and
    /// its ordinal.
    row_groups: Vec<(usize, i16, Option<i32>)>,
    num_rows: i64,
    write_path_in_schema: bool,
}

impl SerializedRowGroups {
    pub(crate) fn new(write_path_in_schema: bool) -> Self {
        Self {
            bytes: Vec::new(),
            row_groups: Vec::new(),
            num_rows: 0,
            write_path_in_schema,
        }
    }

    /// Encode a closed row group. The file has no page index (nor bloom filters): its column
    /// chunks' index locations are cleared, as `ThriftMetadataWriter::finish` clears them.
    pub(crate) fn push(&mut self, mut row_group: RowGroupMetaData) -> Result<()> {
        clear_page_index_locations(&mut row_group);
        let mut writer = ThriftCompactOutputProtocol::new(&mut self.bytes);
        writer.set_write_path_in_schema(self.write_path_in_schema);
        let last_field_id = row_group.write_thrift_before_ordinal(&mut writer)?;
        self.row_groups
            .push((self.bytes.len(), last_field_id, row_group.ordinal()));
        self.num_rows += row_group.num_rows();
        Ok(())
    }

    /// How many row groups were pushed.
    pub(crate) fn len(&self) -> usize {
        self.row_groups.len()
    }

    /// The rows of all of them.
    pub(crate) fn num_rows(&self) -> i64 {
        self.num_rows
    }

    /// Write `FileMetaData`'s list of row groups (field `field_id`) as
    /// `Vec<RowGroupMetaData>::write_thrift_field` writes it from the structs, each row group's
    /// ordinal as `writer` says (`FileMeta::write_thrift` sets it from the row groups' count).
    pub(crate) fn write_field<W: Write>(
        &self,
        writer: &mut ThriftCompactOutputProtocol<W>,
        field_id: i16,
        last_field_id: i16,
    ) -> Result<i16> {
        writer.write_field_begin(FieldType::List, field_id, last_field_id)?;
        writer.write_list_begin(ElementType::Struct, self.row_groups.len())?;
        let mut start = 0;
        for &(end, last_field_id, ordinal) in &self.row_groups {
            writer.write_raw(&self.bytes[start..end])?;
            RowGroupMetaData::write_thrift_ordinal(ordinal, writer, last_field_id)?;
            start = end;
        }
        Ok(field_id)
    }
}
