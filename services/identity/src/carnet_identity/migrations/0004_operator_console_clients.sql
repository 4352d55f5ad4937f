-- The agents' desk software of an insurer is a client kind of its own: its tokens act
-- as an operator (oppositions and closures recorded at the desk).
ALTER TABLE software_clients DROP CONSTRAINT software_clients_kind_check;
ALTER TABLE software_clients ADD CONSTRAINT software_clients_kind_check CHECK (
    kind IN ('pacs', 'practice_software', 'hospital_system', 'laboratory_system', 'catalogue_app',
             'insurer_registry', 'operator_console'));
