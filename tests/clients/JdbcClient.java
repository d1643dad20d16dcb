// pgJDBC (the PostgreSQL JDBC driver) against Quiver: what a Java
// application, and the schema browsers of JDBC tools, do. Run by the
// integration tests as `java -cp postgresql.jar JdbcClient.java PORT`
// (a single-file source program); exits non-zero on the first failed check.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;

public class JdbcClient {
    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static List<String> column(ResultSet rs, String name) throws SQLException {
        List<String> out = new ArrayList<>();
        while (rs.next()) {
            out.add(rs.getString(name));
        }
        rs.close();
        return out;
    }

    static void expectState(Statement st, String sql, String state) {
        try {
            st.execute(sql);
        } catch (SQLException e) {
            check(state.equals(e.getSQLState()), sql + ": SQLSTATE " + e.getSQLState() + " " + e.getMessage());
            return;
        }
        throw new AssertionError(sql + " did not fail");
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/quiver?user=jdbc&ApplicationName=jdbc-test";
        try (Connection c = DriverManager.getConnection(url)) {
            Statement st = c.createStatement();
            st.execute("CREATE EXTENSION IF NOT EXISTS vector");
            st.execute("CREATE TABLE docs (id BIGSERIAL PRIMARY KEY, title VARCHAR(40) NOT NULL UNIQUE, "
                    + "score DOUBLE PRECISION DEFAULT 0, embedding VECTOR(3))");
            st.execute("CREATE INDEX docs_embedding_idx ON docs USING hnsw (embedding vector_cosine_ops)");

            // Inserts through a prepared statement, past the driver's
            // prepareThreshold (5), so later ones run as server-side statements.
            try (PreparedStatement ins = c.prepareStatement(
                    "INSERT INTO docs (title, score, embedding) VALUES (?, ?, ?::vector)")) {
                for (int i = 0; i < 10; i++) {
                    ins.setString(1, "doc" + i);
                    ins.setDouble(2, i * 0.5);
                    ins.setString(3, "[" + (i + 1) + "," + (10 - i) + ",1]");
                    check(ins.executeUpdate() == 1, "insert " + i);
                }
            }
            try (PreparedStatement q = c.prepareStatement(
                    "SELECT id, title, embedding <=> ?::vector AS d FROM docs WHERE score >= ? "
                            + "ORDER BY embedding <=> ?::vector LIMIT 3")) {
                for (int i = 0; i < 7; i++) {
                    q.setString(1, "[10,1,1]");
                    q.setDouble(2, 1.0);
                    q.setString(3, "[10,1,1]");
                    List<String> titles = column(q.executeQuery(), "title");
                    check(titles.size() == 3 && titles.get(0).equals("doc9"), "knn run " + i + ": " + titles);
                }
            }
            ResultSet one = st.executeQuery("SELECT count(*), max(id), 1 AS one FROM docs");
            check(one.next(), "a row");
            check(one.getLong("count") == 10 && one.getLong("max") == 10 && one.getInt("one") == 1, "count");

            // Transactions.
            c.setAutoCommit(false);
            st.execute("INSERT INTO docs (title) VALUES ('gone')");
            c.rollback();
            c.setAutoCommit(true);
            ResultSet gone = st.executeQuery("SELECT count(*) FROM docs WHERE title = 'gone'");
            gone.next();
            check(gone.getLong(1) == 0, "rollback");

            expectState(st, "INSERT INTO docs (title) VALUES ('doc1')", "23505");
            expectState(st, "SELECT * FROM nowhere", "42P01");

            // Schema discovery as JDBC tools (DBeaver, IntelliJ, …) run it.
            DatabaseMetaData md = c.getMetaData();
            check(md.getDatabaseProductName().equals("PostgreSQL"), md.getDatabaseProductName());
            List<String> schemas = column(md.getSchemas(), "TABLE_SCHEM");
            check(schemas.contains("public"), "schemas " + schemas);
            List<String> tables = column(md.getTables(null, "public", "%", new String[] {"TABLE"}), "TABLE_NAME");
            check(tables.equals(List.of("docs")), "tables " + tables);
            ResultSet cols = md.getColumns(null, "public", "docs", "%");
            List<String> described = new ArrayList<>();
            while (cols.next()) {
                described.add(cols.getString("COLUMN_NAME") + ":" + cols.getString("TYPE_NAME") + ":"
                        + cols.getInt("NULLABLE"));
            }
            check(described.equals(List.of("id:bigserial:0", "title:varchar:0", "score:float8:1",
                    "embedding:vector:1")), "columns " + described);
            List<String> pk = column(md.getPrimaryKeys(null, "public", "docs"), "COLUMN_NAME");
            check(pk.equals(List.of("id")), "primary key " + pk);
            ResultSet idx = md.getIndexInfo(null, "public", "docs", false, false);
            List<String> indexes = new ArrayList<>();
            while (idx.next()) {
                indexes.add(idx.getString("INDEX_NAME") + ":" + idx.getString("COLUMN_NAME") + ":"
                        + idx.getBoolean("NON_UNIQUE"));
            }
            check(indexes.contains("docs_pkey:id:false") && indexes.contains("docs_title_key:title:false")
                    && indexes.contains("docs_embedding_idx:embedding:true"), "indexes " + indexes);
            List<String> unique = new ArrayList<>();
            ResultSet u = md.getIndexInfo(null, "public", "docs", true, false);
            while (u.next()) {
                unique.add(u.getString("INDEX_NAME"));
            }
            check(!unique.contains("docs_embedding_idx") && unique.contains("docs_pkey"), "unique " + unique);

            st.execute("DROP TABLE docs");
        }
        System.out.println("pgJDBC: all checks passed");
    }
}
