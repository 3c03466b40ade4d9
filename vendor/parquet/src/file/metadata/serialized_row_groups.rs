// pcaplab's patch (the seventh, see PATCHED.md): this file is new.

//! Row groups' metadata kept thrift-encoded once each row group is closed.
//!
//! [`SerializedFileWriter`](crate::file::writer::SerializedFileWriter) holds every closed row
//! group's [`RowGroupMetaData`] until the footer is written: about 700 bytes a column chunk
//! with the index slots kept beside it, where the footer's thrift encoding of the same chunk
//! takes about 90. A file of many row groups (a flood's flow table: one every 16 Ki flows) then
//! holds memory in proportion to its rows. Kept encoded, the row groups take what the footer
//! will, and are spliced into it as they are.

use std::io::Write;

use crate::errors::Result;
use crate::file::metadata::RowGroupMetaData;
use crate::parquet_thrift::{
    ElementType, FieldType, ThriftCompactOutputProtocol, WriteThrift, WriteThriftField,
};

/// The `RowGroup` structs of a file's closed row groups, each as `FileMetaData`'s list of row
/// groups would encode it (see [`SerializedRowGroups::write_field`]).
#[derive(Debug)]
pub(crate) struct SerializedRowGroups {
    /// Each row group encoded without its `ordinal` (field 7), ending with the struct's stop
    /// byte: whether ordinals are written depends on how many row groups the file ends with.
    bytes: Vec<u8>,
    /// Where each row group's bytes end in `bytes`, and its ordinal.
    row_groups: Vec<(usize, Option<i16>)>,
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
        for column in &mut row_group.columns {
            column.column_index_offset = None;
            column.column_index_length = None;
            column.offset_index_offset = None;
            column.offset_index_length = None;
        }
        let mut writer = ThriftCompactOutputProtocol::new(&mut self.bytes);
        writer.set_write_path_in_schema(self.write_path_in_schema);
        writer.set_write_row_group_ordinal(false);
        row_group.write_thrift(&mut writer)?;
        let ordinal = row_group.ordinal().and_then(|o| i16::try_from(o).ok());
        self.row_groups.push((self.bytes.len(), ordinal));
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

    /// Write `FileMetaData`'s list of row groups (field `field_id`) exactly as
    /// `Vec<RowGroupMetaData>::write_thrift_field` writes it from the structs: each row group
    /// with its ordinal if every row group's ordinal fits in an i16 (`FileMeta::write_thrift`),
    /// as the field after `total_compressed_size` (6), which `RowGroupMetaData::write_thrift`
    /// always writes.
    pub(crate) fn write_field<W: Write>(
        &self,
        writer: &mut ThriftCompactOutputProtocol<W>,
        field_id: i16,
        last_field_id: i16,
    ) -> Result<i16> {
        writer.write_field_begin(FieldType::List, field_id, last_field_id)?;
        writer.write_list_begin(ElementType::Struct, self.row_groups.len())?;
        let ordinals = i16::try_from(self.row_groups.len()).is_ok();
        let mut start = 0;
        for &(end, ordinal) in &self.row_groups {
            let encoded = &self.bytes[start..end];
            match ordinal.filter(|_| ordinals) {
                Some(ordinal) => {
                    // Everything but the stop byte, the ordinal, the stop byte.
                    debug_assert_eq!(encoded.last(), Some(&0), "a struct ends with its stop byte");
                    writer.write_raw(&encoded[..encoded.len() - 1])?;
                    ordinal.write_thrift_field(writer, 7, 6)?;
                    writer.write_struct_end()?;
                }
                None => writer.write_raw(encoded)?,
            }
            start = end;
        }
        Ok(field_id)
    }
}
